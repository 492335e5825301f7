//! Katran-style fixtures through `BPF_PROG_TEST_RUN` on the real XDP
//! program: one table of rows (input frame, expected action, reason and
//! output frame, see `fixtures/rows.rs`), one runner (`fixtures/mod.rs`).

mod fixtures;

#[test]
fn every_fixture_row_does_what_it_says() {
    fixtures::run(&fixtures::rows::setup(), fixtures::rows::table());
}
