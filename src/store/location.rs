//! Where the database is: a SQLite file or a PostgreSQL server, from `--db` / `INFERTUNE_DB`.
//! A PostgreSQL URL may carry a password; everything shown (messages, logs, `status`) uses
//! [`redact`], and no URL is ever stored in the database.

use std::fmt;
use std::path::{Path, PathBuf};

/// A database to open.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user[:password]@host[:port]/database[?sslmode=require]`).
    Postgres(String),
}

impl Location {
    /// `--db` as given: a `postgres://` or `postgresql://` URL, else a SQLite file path.
    pub fn from_arg(arg: &Path) -> Location {
        let text = arg.to_string_lossy();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.into_owned())
        } else {
            Location::Sqlite(arg.to_path_buf())
        }
    }

    /// The SQLite file, if this is one (lock files live beside it).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }
}

/// Shows the location without a password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// Debug output is redacted too: a location in an error's debug form must not leak it.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// `url` with its password (and any `password=` query parameter) replaced by `***`. Text that
/// does not parse as a URL is shown as `<unparsable database URL>`, since it may hold one.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else { return "<unparsable database URL>".to_string() };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if pairs.iter().any(|(k, _)| k == "password") {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (k, v) in &pairs {
            query.append_pair(k, if k == "password" { "***" } else { v });
        }
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let url = "postgres://tuner:s3cret@db.example:5432/fleet?sslmode=require";
        let loc = Location::from_arg(Path::new(url));
        assert_eq!(loc.to_string(), "postgres://tuner:***@db.example:5432/fleet?sslmode=require");
        assert!(!format!("{loc:?}").contains("s3cret"));
        assert_eq!(
            redact("postgresql://u@h/d?password=s3cret&sslmode=require"),
            "postgresql://u@h/d?password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact("not a url s3cret"), "<unparsable database URL>");
    }

    #[test]
    fn paths_are_sqlite() {
        assert_eq!(Location::from_arg(Path::new("a/b.db")), Location::Sqlite("a/b.db".into()));
        assert_eq!(Location::from_arg(Path::new("a/b.db")).sqlite_path(), Some(Path::new("a/b.db")));
        assert!(Location::from_arg(Path::new("postgresql://h/d")).sqlite_path().is_none());
    }
}
