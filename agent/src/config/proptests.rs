//! Properties of the config parser over generated and mutated text: it
//! never panics, and every error it gives names a line and column inside
//! the text it read (DESIGN.md: "errors with file, line and column").

use std::path::Path;

use proptest::prelude::*;

use super::{Config, ConfigError};

/// The example configuration shipped with the agent: the mutations'
/// starting point, a file that parses.
const EXAMPLE: &str = include_str!("../../../config/vipx.toml");
const PATH: &str = "/etc/vipx/vipx.toml";

/// Parses `text`; fails unless it is accepted or refused with a position
/// inside `text` (1-based; the column may be one past a line's end).
fn parsed_or_placed(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(Path::new(PATH), text) {
        Ok(_) => Ok(()),
        Err(ConfigError::Invalid {
            path,
            line,
            column,
            message,
        }) => {
            prop_assert_eq!(path.as_path(), Path::new(PATH));
            let lines: Vec<&str> = text.split('\n').collect();
            prop_assert!(
                (1..=lines.len()).contains(&line),
                "line {} of {}: {}",
                line,
                lines.len(),
                message
            );
            let width = lines[line - 1].chars().count();
            prop_assert!(
                (1..=width + 1).contains(&column),
                "column {} of a {}-character line {}: {}",
                column,
                width,
                line,
                message
            );
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "not a positioned error: {other}"
        ))),
    }
}

/// One edit of a text, at a fraction of its length.
#[derive(Clone, Debug)]
enum Edit {
    Delete { at: f64, len: usize },
    Insert { at: f64, text: String },
    Truncate { at: f64 },
}

fn edit() -> impl Strategy<Value = Edit> {
    let token = prop_oneof![
        Just("=".to_owned()),
        Just("\n".to_owned()),
        Just("[".to_owned()),
        Just("]]".to_owned()),
        Just("\"".to_owned()),
        Just("[[service]]\n".to_owned()),
        Just("[[group]]\n".to_owned()),
        Just("weight = -1\n".to_owned()),
        Just("port = 70000\n".to_owned()),
        Just("é".to_owned()),
        "[ -~]{1,12}",
        "\\PC{1,4}",
    ];
    prop_oneof![
        (0.0..1.0, 1..40usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (0.0..1.0, token).prop_map(|(at, text)| Edit::Insert { at, text }),
        (0.0..1.0).prop_map(|at| Edit::Truncate { at }),
    ]
}

/// The char boundary nearest below `at` of the way through `text`.
fn boundary(text: &str, at: f64) -> usize {
    let mut i = (text.len() as f64 * at) as usize;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &mut String, edit: &Edit) {
    match edit {
        Edit::Delete { at, len } => {
            let start = boundary(text, *at);
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(start..end, "");
        }
        Edit::Insert { at, text: new } => text.insert_str(boundary(text, *at), new),
        Edit::Truncate { at } => text.truncate(boundary(text, *at)),
    }
}

#[test]
fn the_example_parses() {
    Config::parse(Path::new(PATH), EXAMPLE).expect("the shipped example parses");
}

proptest! {
    #[test]
    fn any_text_is_parsed_or_refused_with_its_position(text in "\\PC{0,300}") {
        parsed_or_placed(&text)?;
    }

    /// Text made of TOML's own characters gets further into the parser.
    #[test]
    fn toml_like_text_is_parsed_or_refused_with_its_position(
        text in "([a-z_]{1,10}|\\[{1,2}|\\]{1,2}| = |\"[a-z0-9.:/ ]{0,12}\"|[0-9]{1,6}|\n|, |\\{|\\}|#.{0,5})*",
    ) {
        parsed_or_placed(&text)?;
    }

    #[test]
    fn a_mutated_example_is_parsed_or_refused_with_its_position(edits in proptest::collection::vec(edit(), 1..4)) {
        let mut text = EXAMPLE.to_owned();
        for edit in &edits {
            apply(&mut text, edit);
        }
        parsed_or_placed(&text)?;
    }
}
