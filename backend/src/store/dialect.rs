//! Everything that differs between SQLite and Postgres, in one place: how a URL is opened,
//! the session set-up and pool size, the migrations, the full-text search syntax and the
//! lock that orders concurrent creates. The queries in `sql.rs` are the same on both and
//! ask the dialect for the parts that are not. Leases and change notices are a different
//! question (one process or several), answered by `coordination.rs`.

use super::StoreError;
use crate::domain::SearchQuery;
use sqlx::AnyPool;

/// SQLite's search index keys (migration 0011): an entry's rowid is the owner's number
/// shifted left by this much, or-ed with the indexed row's own rowid.
pub(super) const OWNER_SHIFT: u32 = 36;
/// The indexed row's own rowid in an entry's rowid.
const ROW_MASK: i64 = (1 << OWNER_SHIFT) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded default: one file in WAL mode with `synchronous=FULL`, one process.
    Sqlite,
    /// Scale-out: several instances share one database.
    Postgres,
}

impl Dialect {
    /// The dialect a database URL names.
    pub fn of_url(url: &str) -> Result<Dialect, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(StoreError::Unavailable(format!(
                "unsupported database URL {url:?}: expected sqlite://PATH or postgres://..."
            )))
        }
    }

    /// The URL to connect with. A SQLite file is created when missing, with its folder.
    pub fn prepare_url(self, url: &str) -> Result<String, StoreError> {
        let mut url = url.to_owned();
        if self == Dialect::Sqlite {
            if let Some(dir) = sqlite_path(&url).and_then(|p| std::path::Path::new(p).parent()) {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        Ok(url)
    }

    /// Connections in the pool: SQLite writes one at a time anyway.
    pub fn max_connections(self) -> u32 {
        match self {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 16,
        }
    }

    /// Whether the pool checks a connection before handing it out. A SQLite connection is
    /// a file handle nothing can take away, and the check was a round trip to its worker
    /// thread before every statement batch (a third of what `BEGIN` cost a save).
    pub fn test_before_acquire(self) -> bool {
        match self {
            Dialect::Sqlite => false,
            Dialect::Postgres => true,
        }
    }

    /// Whether saves leave search indexing to a background indexer (`indexer.rs`):
    /// SQLite's FTS5 entries are tables of their own, written apart from the rows;
    /// Postgres' search vectors are columns of the rows the save writes anyway.
    pub fn indexes_in_background(self) -> bool {
        self == Dialect::Sqlite
    }

    /// Statements every new connection runs first.
    pub fn session_setup(self) -> &'static [&'static str] {
        match self {
            Dialect::Sqlite => &[
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = FULL",
                "PRAGMA busy_timeout = 5000",
                "PRAGMA foreign_keys = ON",
            ],
            Dialect::Postgres => &[],
        }
    }

    /// Applies the embedded migrations of this dialect.
    pub async fn migrate(self, pool: &AnyPool) -> Result<(), StoreError> {
        let migrated = match self {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(pool).await,
        };
        migrated.map_err(|e| StoreError::Database(format!("migration failed: {e}")))
    }

    /// A statement that makes concurrent transactions for one owner (bound as `$1`) run one
    /// after another, on any instance; `None` where writers are serialised anyway (SQLite
    /// runs one writing statement at a time).
    pub fn owner_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock(hashtext($1))::text"),
        }
    }

    /// A statement that makes concurrent sends into one chat's queue (its id bound as
    /// `$1`) count and insert one after another, on any instance (Postgres' READ
    /// COMMITTED would let two both see room); `None` where writers are serialised anyway.
    pub fn queue_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            // Two keys, the first naming the queue locks, so they never meet `owner_lock`'s.
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock(21845, hashtext($1))::text"),
        }
    }

    /// A query giving `(id, message_id, score)`, one row per title or message of the owner
    /// matching the expression bound as `$1` (`message_id` is null for a title), scored so
    /// that lower is better: how often the words start a word of the text, for its length
    /// (negated; Postgres' ts_rank, negated to agree). A title hit counts double: a chat
    /// named after the words is what was meant. `owner` names the parameter that holds the
    /// owner in the statement the hits go into.
    ///
    /// Neither score reads beyond the row scored. FTS5's bm25 would: it counts the rows
    /// that match each word in the whole index (its inverse document frequency), every
    /// user's, at every query (23 ms of a search for `a` beside 200,000 other matches,
    /// against 0.05 ms for the owner's match itself). On SQLite the count is over the
    /// lowercased text with common punctuation as spaces, so a rare word start (after
    /// other punctuation, or an uppercase letter outside ASCII) ranks a hit lower, never
    /// hides it.
    ///
    /// Either way the index is read inside the owner's entries only (migration 0011), so
    /// other users' matches cost nothing: on SQLite an FTS5 entry's rowid carries the
    /// owner's number in its high bits and the match is asked for that owner's rowid
    /// range; on Postgres the owner's words carry a tag of the owner (`owned_search`, under
    /// a GIN index) and the query asks for tagged words. The plain vectors rank. The
    /// messages' match is planned on its own (`OFFSET 0` keeps it a subquery): one read of
    /// the tagged index, then the owner check; joined in, the planner read the index again
    /// for each of the owner's chats (29 ms instead of 3 for 2,000 matches in 40 chats).
    pub fn search_hits(self, owner: &str) -> String {
        match self {
            Dialect::Sqlite => {
                let key = format!("SELECT id FROM search_owners WHERE owner = {owner}");
                let range = |fts: &str| {
                    format!(
                        "{fts} MATCH $1 AND f.rowid >= (({key}) << {OWNER_SHIFT}) \
                         AND f.rowid <= (({key}) << {OWNER_SHIFT}) + {ROW_MASK}"
                    )
                };
                // Each hit's text, lowercased, with a space before every word that common
                // punctuation or a line break starts.
                let spaced = |text: &str| {
                    let mut x = format!("lower({text})");
                    for c in ["char(10)", "char(13)", "char(9)", "'('", "'\"'", "'*'", "'_'", "'`'"] {
                        x = format!("replace({x}, {c}, ' ')");
                    }
                    format!("' ' || {x}")
                };
                // The expression's words (`"w1"* "w2"*`) as a JSON array.
                let words = r#"'[' || replace(replace($1, '"* "', '","'), '"*', '"') || ']'"#;
                format!(
                    "SELECT id, message_id, -weight * (SELECT COALESCE(SUM( \
                         (length(x) - length(replace(x, ' ' || w.value, ''))) \
                         / length(' ' || w.value)), 0) FROM json_each({words}) w) \
                       / (1.0 + length(x)) AS score \
                     FROM (SELECT c.id AS id, NULL AS message_id, 2.0 AS weight, {} AS x \
                       FROM contexts_fts f JOIN contexts c ON c.rowid = (f.rowid & {ROW_MASK}) \
                       WHERE {} \
                     UNION ALL \
                     SELECT m.context_id, m.id, 1.0, {} \
                       FROM messages_fts f JOIN messages m ON m.rowid = (f.rowid & {ROW_MASK}) \
                       WHERE {}) hit",
                    spaced("c.title"),
                    range("contexts_fts"),
                    spaced(
                        "(SELECT group_concat(json_extract(value, '$.text'), ' ') \
                         FROM json_each(m.content))"
                    ),
                    range("messages_fts")
                )
            }
            Dialect::Postgres => format!(
                "SELECT c.id AS id, CAST(NULL AS TEXT) AS message_id, \
                   -2 * ts_rank(c.search, to_tsquery('simple', $1)) AS score \
                   FROM contexts c WHERE c.owner = {owner} \
                   AND tag_words(c.owner, c.search) @@ tag_query({owner}, to_tsquery('simple', $1)) \
                 UNION ALL \
                 SELECT m.context_id, m.id, -ts_rank(m.search, to_tsquery('simple', $1)) \
                   FROM (SELECT context_id, id, search FROM messages \
                     WHERE owned_search @@ tag_query({owner}, to_tsquery('simple', $1)) \
                     OFFSET 0) m \
                   JOIN contexts c ON c.id = m.context_id WHERE c.owner = {owner}"
            ),
        }
    }

    /// The search expression `search_hits` takes: each word as a prefix, all of them
    /// required. An FTS5 MATCH expression quotes each word; a `to_tsquery` text needs no
    /// quotes, since the words hold only letters and digits.
    pub fn search_expression(self, query: &SearchQuery) -> String {
        let (term, and): (fn(&str) -> String, &str) = match self {
            Dialect::Sqlite => (|w| format!("\"{w}\"*"), " "),
            Dialect::Postgres => (|w| format!("{w}:*"), " & "),
        };
        query
            .words()
            .iter()
            .map(|w| term(w))
            .collect::<Vec<_>>()
            .join(and)
    }
}

/// The file a `sqlite:` URL names, when it names one.
pub(super) fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sqlite_paths_come_out_of_urls() {
        assert_eq!(sqlite_path("sqlite://./data/x.db"), Some("./data/x.db"));
        assert_eq!(sqlite_path("sqlite:x.db?mode=rwc"), Some("x.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    #[test]
    fn urls_name_their_dialect() {
        assert_eq!(Dialect::of_url("sqlite://x.db").ok(), Some(Dialect::Sqlite));
        assert_eq!(
            Dialect::of_url("postgres://h/db").ok(),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::of_url("postgresql://h/db").ok(),
            Some(Dialect::Postgres)
        );
        assert!(Dialect::of_url("mysql://h/db").is_err());
    }

    #[test]
    fn search_keeps_words_and_drops_query_syntax() {
        let q = SearchQuery::parse(r#"Rust "NEAR(async, tokio)" title:x OR-*"#).expect("words");
        assert_eq!(
            Dialect::Sqlite.search_expression(&q),
            r#""rust"* "near"* "async"* "tokio"* "title"* "x"* "or"*"#
        );
        assert_eq!(
            Dialect::Postgres.search_expression(&q),
            "rust:* & near:* & async:* & tokio:* & title:* & x:* & or:*"
        );
    }

    proptest! {
        #[test]
        fn search_expressions_hold_only_quoted_words(q in ".{0,200}") {
            if let Ok(parsed) = SearchQuery::parse(&q) {
                for term in Dialect::Sqlite.search_expression(&parsed).split(' ') {
                    let word = term.strip_prefix('"').and_then(|t| t.strip_suffix("\"*"));
                    prop_assert!(word.is_some_and(|w| !w.is_empty() && w.chars().all(char::is_alphanumeric)), "{term}");
                }
                prop_assert!(Dialect::Postgres
                    .search_expression(&parsed)
                    .chars()
                    .all(|c| c.is_alphanumeric() || " &:*".contains(c)));
            }
        }
    }
}
