//! `cargo xtask deps`: the agent's modules (`agent/src`) depend on each
//! other one way, with no import cycle.
//!
//! The agent is layered: the daemon (`daemon`, `api`, `status`) drives the
//! domains (election, pulse, health, ownership, lb...), which drive the data
//! plane and lean on `common` and leaf helpers; nothing lower reaches back
//! up, so each layer can be read, tested and changed without those above it.
//! Checked at two levels: (1) between top-level modules (`crate::a` ->
//! `crate::b`); (2) in each module, between its direct children (any
//! reference from one child's subtree into a sibling's). A child naming its
//! parent (say an error type in `mod.rs`) or a parent its child is no edge.
//! Both are one rule: a reference from `m` to `t` joins the two children of
//! their deepest common ancestor that lead to `m` and to `t`.
//!
//! Every `mod` is followed from `lib.rs`/`main.rs` (`foo.rs` and
//! `foo/mod.rs` are `foo`, `foo/bar.rs` is `foo::bar`, `#[path]` honoured:
//! `health/checks/postgres.rs` uses it). Test code is left out: `#[cfg(test)]`
//! modules with what they declare (`tests.rs`, `*_tests.rs`, `tests/`,
//! `test_servers.rs` all come in that way) and `#[cfg(test)]` items. Read
//! are the `use` trees and paths, in function bodies and macro calls too,
//! that start with `crate::`, `super::`, `self::` or (in `use`) a child
//! module's name, each resolved to its longest prefix that is a module.
//! `main.rs` names the library `vipx_agent::`: root to child, never an edge.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use proc_macro2::{Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{
    Attribute, Item, Meta,
    parse::{ParseStream, Parser as _},
    punctuated::Punctuated,
    visit::{self, Visit},
};

use crate::util::workspace_root;

/// A module, as the names after `crate::`; the crate root is empty.
type ModPath = Vec<String>;

/// Edges by the module whose children they join: `(from, to)` child names,
/// with the first place (file under `agent/src`, line) that makes one.
type Edges = BTreeMap<ModPath, BTreeMap<(String, String), (PathBuf, usize)>>;

pub fn run() -> Result<()> {
    let (src, mut sources) = (workspace_root().join("agent/src"), BTreeMap::new());
    read_sources(&src, Path::new(""), &mut sources)?;
    let (modules, edges) = analyse(&sources)?;
    let cycles = cycles(&edges);
    let count: usize = edges.values().map(BTreeMap::len).sum();
    if cycles.is_empty() {
        println!("deps: {modules} agent modules, {count} edges, no import cycle");
        return Ok(());
    }
    cycles
        .iter()
        .for_each(|cycle| print!("{}", describe(&edges, cycle)));
    bail!(
        "deps: {modules} agent modules, {count} edges, {} import cycles",
        cycles.len()
    )
}

/// A cycle, with each of its edges and where it is made.
fn describe(edges: &Edges, (parent, members): &(ModPath, BTreeSet<String>)) -> String {
    let place = match parent.is_empty() {
        true => "among the top-level modules".to_owned(),
        false => format!("inside `{}` among", parent.join("::")),
    };
    let names: Vec<_> = members.iter().map(String::as_str).collect();
    let mut text = format!("deps: import cycle {place} {{{}}}:\n", names.join(", "));
    for ((from, to), (file, line)) in &edges[parent] {
        if members.contains(from) && members.contains(to) {
            text += &format!("  {from} -> {to}  (agent/src/{}:{line})\n", file.display());
        }
    }
    text
}

/// Every `.rs` file under `dir`, by its path relative to `agent/src`.
fn read_sources(dir: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let (path, rel) = (entry.path(), rel.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            read_sources(&path, &rel, out)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path);
            out.insert(
                rel,
                text.with_context(|| format!("reading {}", path.display()))?,
            );
        }
    }
    Ok(())
}

/// The number of (non-test, non-root) modules and the edges between them.
fn analyse(sources: &BTreeMap<PathBuf, String>) -> Result<(usize, Edges)> {
    let mut tree = Tree {
        sources,
        files: BTreeSet::new(),
        modules: BTreeSet::new(),
        units: Vec::new(),
    };
    for root in ["lib.rs", "main.rs"].map(PathBuf::from) {
        if sources.contains_key(&root) {
            tree.file(&root, Path::new(""), Vec::new(), false)?;
        }
    }
    if let Some(orphan) = sources.keys().find(|file| !tree.files.contains(*file)) {
        bail!("agent/src/{} is declared by no `mod`", orphan.display());
    }
    let mut edges = Edges::new();
    for (module, file, items) in &tree.units {
        let (modules, edges) = (&tree.modules, &mut edges);
        let mut refs = Refs {
            modules,
            module,
            file,
            edges,
        };
        items.iter().for_each(|item| refs.visit_item(item));
    }
    Ok((tree.modules.len().saturating_sub(1), edges))
}

/// The module tree, as the `mod` declarations build it.
struct Tree<'a> {
    sources: &'a BTreeMap<PathBuf, String>,
    files: BTreeSet<PathBuf>,
    modules: BTreeSet<ModPath>,
    /// Each module's non-test items (not its `mod`s), with their file.
    units: Vec<(ModPath, PathBuf, Vec<Item>)>,
}

impl Tree<'_> {
    /// A module's file; `dir` holds the files of its child modules.
    fn file(&mut self, file: &Path, dir: &Path, module: ModPath, test: bool) -> Result<()> {
        let name = module.join("::");
        let text = (self.sources.get(file))
            .with_context(|| format!("module `{name}`: no file {}", file.display()))?;
        let parsed =
            syn::parse_file(text).with_context(|| format!("parsing {}", file.display()))?;
        self.files.insert(file.to_owned());
        self.items(file, (dir, false), parsed.items, module, test)
    }

    /// A module's items, in `file`; `at` is where its child modules' files
    /// are and whether it is an inline `mod`.
    fn items(
        &mut self,
        file: &Path,
        (dir, inline): (&Path, bool),
        items: Vec<Item>,
        module: ModPath,
        test: bool,
    ) -> Result<()> {
        let mut kept = Vec::new();
        for item in items {
            let Item::Mod(decl) = item else {
                kept.extend(Some(item).filter(|item| !is_test(item)));
                continue;
            };
            let name = decl.ident.to_string();
            let child = [module.clone(), vec![name.clone()]].concat();
            let test = test || is_test(&decl);
            let path = decl.attrs.iter().find_map(|attr| match &attr.meta {
                Meta::NameValue(kv) if kv.path.is_ident("path") => {
                    syn::parse2::<syn::LitStr>(kv.value.to_token_stream()).ok()
                }
                _ => None,
            });
            let path = path.map(|lit| lit.value());
            if let Some((_, items)) = decl.content {
                let dir = dir.join(path.as_deref().unwrap_or(&name));
                self.items(file, (&dir, true), items, child, test)?;
            } else if let Some(path) = path {
                // Relative to the file's directory, but in an inline `mod`;
                // the file's own child modules then sit next to it.
                let base = match inline {
                    true => dir,
                    false => file.parent().unwrap_or(dir),
                };
                let target = base.join(path);
                let next = target.parent().unwrap_or(base).to_owned();
                self.file(&target, &next, child, test)?;
            } else {
                let flat = dir.join(format!("{name}.rs"));
                let target = match self.sources.contains_key(&flat) {
                    true => flat,
                    false => dir.join(&name).join("mod.rs"),
                };
                self.file(&target, &dir.join(&name), child, test)?;
            }
        }
        if !test {
            self.modules.insert(module.clone());
            self.units.push((module, file.to_owned(), kept));
        }
        Ok(())
    }
}

/// Whether a node (item, field, match arm...) is `#[cfg(test)]` or
/// `#[cfg(all(test, ...))]`: its outer attributes lead its tokens.
fn is_test(node: &impl ToTokens) -> bool {
    fn needs_test(meta: &Meta) -> bool {
        match meta {
            Meta::Path(path) => path.is_ident("test"),
            Meta::List(list) if list.path.is_ident("all") => list
                .parse_args_with(Punctuated::<Meta, syn::Token![,]>::parse_terminated)
                .is_ok_and(|args| args.iter().any(needs_test)),
            _ => false,
        }
    }
    let outer = |input: ParseStream| {
        let attrs = Attribute::parse_outer(input)?;
        input.parse::<TokenStream>().map(|_| attrs)
    };
    let attrs = outer.parse2(node.to_token_stream()).unwrap_or_default();
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.parse_args().is_ok_and(|meta| needs_test(&meta))
    })
}

/// Collects one module's references to other modules into `edges`.
struct Refs<'a> {
    modules: &'a BTreeSet<ModPath>,
    module: &'a ModPath,
    file: &'a Path,
    edges: &'a mut Edges,
}

impl Refs<'_> {
    fn resolve(&mut self, segments: &[String], line: usize, in_use: bool) {
        let child = |first: &String| [self.module.clone(), vec![first.clone()]].concat();
        let (mut target, mut rest) = match segments.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &segments[1..]),
            Some("self" | "super") => (self.module.clone(), segments),
            Some(_) if in_use && self.modules.contains(&child(&segments[0])) => {
                (self.module.clone(), segments)
            }
            _ => return,
        };
        while let Some(first) = rest.first().map(String::as_str) {
            match first {
                "self" => {}
                "super" if target.pop().is_some() => {}
                "super" => return,
                _ => break,
            }
            rest = &rest[1..];
        }
        for segment in rest {
            target.push(segment.clone());
            if !self.modules.contains(&target) {
                target.pop();
                break;
            }
        }
        let from = self.module;
        let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
        if common < from.len() && common < target.len() {
            let edge = (from[common].clone(), target[common].clone());
            let edges = self.edges.entry(target[..common].to_vec()).or_default();
            edges.entry(edge).or_insert((self.file.to_owned(), line));
        }
    }

    /// A `use` tree; `line` is that of the last segment read.
    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>, line: usize) {
        let leaf = |this: &mut Self, name: Option<&syn::Ident>| {
            let mut path = prefix.clone();
            path.extend(name.map(ToString::to_string).filter(|name| name != "self"));
            this.resolve(&path, name.map_or(line, span_line), true);
        };
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix, span_line(&p.ident));
                prefix.pop();
            }
            syn::UseTree::Name(n) => leaf(self, Some(&n.ident)),
            syn::UseTree::Rename(r) => leaf(self, Some(&r.ident)),
            syn::UseTree::Glob(_) => leaf(self, None),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(t, prefix, line)),
        }
    }

    /// Paths in a macro's tokens: `crate::`/`self::`/`super::`/`$crate::`.
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let sep = |at: usize| match (tokens.get(at), tokens.get(at + 1)) {
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) => {
                a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
            }
            _ => false,
        };
        let mut at = 0;
        while at < tokens.len() {
            match &tokens[at] {
                TokenTree::Group(group) => self.scan(group.stream()),
                TokenTree::Ident(id) if ["crate", "self", "super"].contains(&&*id.to_string()) => {
                    let mut path = vec![id.to_string()];
                    while let (true, Some(TokenTree::Ident(next))) =
                        (sep(at + 1), tokens.get(at + 3))
                    {
                        path.push(next.to_string());
                        at += 3;
                    }
                    self.resolve(&path, span_line(id), false);
                }
                _ => {}
            }
            at += 1;
        }
    }
}

fn span_line(ident: &syn::Ident) -> usize {
    ident.span().start().line
}

/// Visits a kind of node unless it is `#[cfg(test)]`.
macro_rules! skip_tests {
    ($($method:ident($node:ty);)*) => {$(
        fn $method(&mut self, node: &'ast $node) {
            if !is_test(node) {
                visit::$method(self, node);
            }
        }
    )*};
}

impl<'ast> Visit<'ast> for Refs<'_> {
    skip_tests! {
        visit_item(Item);
        visit_impl_item(syn::ImplItem);
        visit_trait_item(syn::TraitItem);
        visit_local(syn::Local);
        visit_field(syn::Field);
        visit_variant(syn::Variant);
        visit_arm(syn::Arm);
    }
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if item.leading_colon.is_none() {
            self.use_tree(&item.tree, &mut Vec::new(), 0);
        }
    }
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if let (None, Some(first)) = (path.leading_colon, path.segments.first()) {
            let names: Vec<_> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.resolve(&names, span_line(&first.ident), false);
        }
        visit::visit_path(self, path);
    }
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
    /// `pub(crate)`, `pub(in crate::x)`: who may see an item, no dependency.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}
}

/// The cycles: each parent module with a strongly connected set of its
/// children (more than one), found by reachability (the graphs are small).
fn cycles(edges: &Edges) -> Vec<(ModPath, BTreeSet<String>)> {
    let mut found = Vec::new();
    for (parent, edges) in edges {
        let reach = |from: &String| {
            let (mut seen, mut todo) = (BTreeSet::new(), vec![from.clone()]);
            while let Some(node) = todo.pop() {
                for (_, to) in edges.keys().filter(|(a, _)| *a == node) {
                    if seen.insert(to.clone()) {
                        todo.push(to.clone());
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<_, _> = edges.keys().map(|(a, _)| (a.clone(), reach(a))).collect();
        let mut sets = BTreeSet::new();
        for (node, from) in &reaches {
            let back = |other: &&String| reaches.get(*other).is_some_and(|r| r.contains(node));
            let set: BTreeSet<String> = from.iter().filter(back).cloned().collect();
            if set.len() > 1 {
                sets.insert(set);
            }
        }
        found.extend(sets.into_iter().map(|set| (parent.clone(), set)));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> BTreeMap<PathBuf, String> {
        let source = |(file, text): &(&str, &str)| (PathBuf::from(file), text.to_string());
        files.iter().map(source).collect()
    }

    /// The module and edge counts of a crate, and the report of its cycles.
    fn check(files: &[(&str, &str)]) -> (usize, usize, String) {
        let (modules, edges) = analyse(&sources(files)).expect("the sources make a crate");
        let report = cycles(&edges).iter().map(|c| describe(&edges, c)).collect();
        (modules, edges.values().map(BTreeMap::len).sum(), report)
    }

    #[test]
    fn top_level_cycle_is_found_with_its_sites() {
        let (modules, edges, report) = check(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "use crate::b::B;\npub struct A;"),
            ("b.rs", "pub struct B;\nfn f() -> crate::a::A {}"),
            ("c.rs", "use crate::{a, b::B};"),
        ]);
        assert_eq!((modules, edges), (3, 4), "a, b, c; a->b, b->a, c->a, c->b");
        let expected = "deps: import cycle among the top-level modules {a, b}:\n  \
                        a -> b  (agent/src/a.rs:1)\n  b -> a  (agent/src/b.rs:2)\n";
        assert_eq!(report, expected, "a <-> b, c out of it");
    }

    #[test]
    fn super_cycle_between_siblings_is_found() {
        let (_, _, report) = check(&[
            ("lib.rs", "pub mod p;"),
            ("p/mod.rs", "mod x; mod y;"),
            ("p/x.rs", "use super::y::Y;"),
            ("p/y.rs", "fn f() { super::x::f(); }"),
        ]);
        let head = "deps: import cycle inside `p` among {x, y}:\n";
        assert!(report.starts_with(head), "x <-> y in p, got {report}");
    }

    #[test]
    fn child_to_parent_and_test_code_do_not_count() {
        let (modules, edges, report) = check(&[
            ("lib.rs", "mod p;"),
            ("p/mod.rs", "mod x; mod y;\npub enum E {}\nuse x::X;"),
            (
                "p/x.rs",
                "use super::E;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nuse super::y;",
            ),
            ("p/x/tests.rs", "use super::super::y::Y;"),
            ("p/y.rs", "use super::{E, x::X};"),
        ]);
        assert_eq!(modules, 3, "p, p::x and p::y; the tests module is left out");
        assert!(report.is_empty(), "no cycle expected, got {report}");
        assert_eq!(edges, 1, "only y -> x is an edge");
    }

    #[test]
    fn macros_inline_modules_and_path_attributes_are_read() {
        let (_, _, report) = check(&[
            ("lib.rs", "mod a; mod b;"),
            (
                "a.rs",
                "mod m { fn f() { select! { _ = crate::b::g() => {} } } }",
            ),
            ("b.rs", "#[path = \"c.rs\"]\nmod c;"),
            ("c.rs", "use super::super::a;"),
        ]);
        let head = "deps: import cycle among the top-level modules {a, b}:\n";
        assert!(
            report.starts_with(head),
            "a <-> b by a macro and #[path]: {report}"
        );
    }

    #[test]
    fn an_undeclared_file_is_an_error() {
        let stray = analyse(&sources(&[("lib.rs", ""), ("stray.rs", "")]));
        let err = stray.expect_err("stray.rs is in no module");
        assert!(
            err.to_string().contains("stray.rs"),
            "the error names it: {err}"
        );
    }
}
