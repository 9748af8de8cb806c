//! Every shipped search space validates; every invalid fixture fails with its expected text.

use crate::common::repo;
use infertune::space::Space;

#[test]
fn every_shipped_space_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("search-spaces")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Space::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected the shipped spaces, found {n}");
}

#[test]
fn invalid_spaces_give_their_errors() {
    let dir = repo().join("tests/fixtures/invalid-spaces");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a '# expect: ' first line", path.display()));
        let err = Space::load(&path).expect_err(&path.display().to_string());
        let shown = format!("{err:#}");
        assert!(shown.contains(expect), "{}:\n  expected: {expect}\n  got: {shown}", path.display());
        assert!(shown.contains(&path.display().to_string()), "error must name the file: {shown}");
        n += 1;
    }
    assert!(n >= 10);
}

#[tokio::test]
async fn space_check_reports_the_grid() {
    let out =
        crate::common::run_cli(&["space", "check", repo().join("search-spaces/quickstart.toml").to_str().unwrap()])
            .await
            .unwrap();
    assert!(out.contains("quickstart.toml: ok"), "{out}");
    assert!(out.contains("grid      36 points"), "{out}");
}
