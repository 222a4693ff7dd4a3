//! The intake writer's own connection to the embedded queue's file, driven through SQLite's C
//! API on the writer's thread.
//!
//! Through sqlx every statement runs on the connection's own thread, and each statement's
//! result comes back through a channel: the accept script (a dozen statements) woke the writer
//! about a dozen times per batch, and each batch crossed threads twice more. On a busy 2-core
//! machine a third of the writer's time went to switching threads (README, "Benchmarks").
//! Here the writer runs the script itself, start to end, and binds the deliveries' strings
//! where they are instead of copying them.
//!
//! Used only for [`super::queue`]'s accept script, while the writer holds the queue pool's
//! connection: that hold keeps apalis' writes on the pool and this connection's batches from
//! waiting on each other inside SQLite (its busy handler sleeps whole milliseconds).

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;
use std::ptr::NonNull;

use libsqlite3_sys as ffi;

/// A value bound to a statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// An integer.
    Int(i64),
    /// Text, bound where it lies (not copied) for the duration of one [`Direct::run`].
    Text(&'a str),
    /// NULL.
    Null,
}

/// One prepared statement of a script.
struct Statement {
    stmt: NonNull<ffi::sqlite3_stmt>,
    params: usize,
}

/// An open connection and its prepared scripts.
pub struct Direct {
    db: NonNull<ffi::sqlite3>,
    /// Keyed by where the script lies and its length, not by its text: scripts are static, and
    /// the largest is over 100 KB, which hashing would read whole on every batch.
    scripts: HashMap<(usize, usize), Vec<Statement>>,
}

// SAFETY: a SQLite connection opened with SQLITE_OPEN_NOMUTEX (multi-thread mode) may be used
// from any thread as long as no two threads use it at once; `Direct` is only used through
// `&mut self`, and its statements never leave it.
unsafe impl Send for Direct {}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("scripts", &self.scripts.len())
            .finish()
    }
}

impl Direct {
    /// Open the database file at `path` (which must exist) and run `setup` (pragmas, temporary
    /// tables) on it. Waits up to `busy_ms` for a lock another connection holds.
    pub fn open(path: &Path, busy_ms: i32, setup: &str) -> Result<Self, String> {
        let name = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{} holds a NUL byte", path.display()))?;
        let mut db = std::ptr::null_mut();
        // SAFETY: `name` is a NUL-terminated path and `db` a valid out-pointer. SQLite sets
        // `db` even on failure (except out of memory), and it must then be closed.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                name.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX,
                std::ptr::null(),
            )
        };
        let Some(db) = NonNull::new(db) else {
            return Err(format!("cannot open {}: out of memory", path.display()));
        };
        let mut direct = Self {
            db,
            scripts: HashMap::new(),
        };
        if rc != ffi::SQLITE_OK {
            return Err(format!(
                "cannot open {}: {}",
                path.display(),
                direct.error()
            ));
        }
        // SAFETY: an open connection.
        unsafe { ffi::sqlite3_busy_timeout(direct.db.as_ptr(), busy_ms) };
        direct.exec(setup)?;
        Ok(direct)
    }

    /// The connection's last error message.
    fn error(&self) -> String {
        // SAFETY: an open connection; the message is NUL-terminated and valid until the next
        // call on the connection, and is copied at once.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db.as_ptr())) }
            .to_string_lossy()
            .into_owned()
    }

    /// Run `sql` (any number of statements, no parameters), ignoring the rows they return.
    pub fn exec(&mut self, sql: &str) -> Result<(), String> {
        let sql = CString::new(sql).map_err(|_| "SQL holds a NUL byte".to_string())?;
        // SAFETY: an open connection and a NUL-terminated script; no callback, and no error
        // out-pointer (the message is read from the connection instead).
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db.as_ptr(),
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// Whether a transaction is open (one a failed script left behind).
    pub fn in_transaction(&self) -> bool {
        // SAFETY: an open connection.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) == 0 }
    }

    /// The first column of the first row of `sql`, as text (`None` for no row or NULL).
    #[cfg(test)]
    pub fn query_text(&mut self, sql: &'static str) -> Result<Option<String>, String> {
        self.run(sql, &[])
    }

    /// Run the script `sql`, prepared the first time and kept: its statements' parameters
    /// take `args` in order, across statements; parameters past the end of `args` are NULL.
    /// Returns the first column of the first row any statement returned, as text. Stops at
    /// the first failing statement; a transaction it opened stays open (see
    /// [`Self::in_transaction`]).
    pub fn run(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<Option<String>, String> {
        let key = (sql.as_ptr() as usize, sql.len());
        if !self.scripts.contains_key(&key) {
            let statements = self.prepare(sql)?;
            self.scripts.insert(key, statements);
        }
        let statements = &self.scripts[&key];
        let params: usize = statements.iter().map(|s| s.params).sum();
        if args.len() > params {
            return Err(format!(
                "{} values for a script of {params} parameters",
                args.len()
            ));
        }
        // Whatever happens below, every statement is reset and its values unbound before the
        // borrowed texts in `args` can go away.
        struct Unbind<'s>(&'s [Statement]);
        impl Drop for Unbind<'_> {
            fn drop(&mut self) {
                for s in self.0 {
                    // SAFETY: statements of the open connection.
                    unsafe {
                        ffi::sqlite3_reset(s.stmt.as_ptr());
                        ffi::sqlite3_clear_bindings(s.stmt.as_ptr());
                    }
                }
            }
        }
        let _unbind = Unbind(statements);
        let mut args = args.iter();
        let mut answer = None;
        let mut answered = false;
        for s in statements {
            let stmt = s.stmt.as_ptr();
            for (index, arg) in (1..).zip(args.by_ref().take(s.params)) {
                // SAFETY: `stmt` is a statement of the open connection and `index` one of
                // its parameters. A text is bound SQLITE_STATIC: SQLite reads it in place
                // until it is unbound, which `_unbind` does before this function returns,
                // while `args` is still borrowed.
                let rc = unsafe {
                    match *arg {
                        Arg::Int(n) => ffi::sqlite3_bind_int64(stmt, index, n),
                        Arg::Null => ffi::sqlite3_bind_null(stmt, index),
                        Arg::Text(text) => ffi::sqlite3_bind_text(
                            stmt,
                            index,
                            text.as_ptr().cast::<c_char>(),
                            c_int::try_from(text.len()).map_err(|_| "text too long")?,
                            ffi::SQLITE_STATIC(),
                        ),
                    }
                };
                if rc != ffi::SQLITE_OK {
                    return Err(self.error());
                }
            }
            loop {
                // SAFETY: as above.
                match unsafe { ffi::sqlite3_step(stmt) } {
                    ffi::SQLITE_DONE => break,
                    ffi::SQLITE_ROW => {
                        if !answered {
                            answered = true;
                            answer = self.column_text(stmt);
                        }
                    }
                    _ => return Err(self.error()),
                }
            }
        }
        Ok(answer)
    }

    /// Column 0 of the row `stmt` stands on, as text.
    fn column_text(&self, stmt: *mut ffi::sqlite3_stmt) -> Option<String> {
        // SAFETY: `stmt` stands on a row; the text (NULL for a NULL value) is valid until the
        // next step, reset or column call on it, and is copied at once; its length is asked
        // after the text, as SQLite's documentation says to.
        unsafe {
            let text = ffi::sqlite3_column_text(stmt, 0);
            if text.is_null() {
                return None;
            }
            let len = usize::try_from(ffi::sqlite3_column_bytes(stmt, 0)).unwrap_or(0);
            let bytes = std::slice::from_raw_parts(text, len);
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    }

    /// Prepare every statement of `sql`, to be kept.
    fn prepare(&mut self, sql: &str) -> Result<Vec<Statement>, String> {
        let mut statements = Vec::new();
        let finalize = |statements: Vec<Statement>| {
            for s in statements {
                // SAFETY: a statement of the open connection, not used again.
                unsafe { ffi::sqlite3_finalize(s.stmt.as_ptr()) };
            }
        };
        let bytes = sql.as_bytes();
        let mut rest = 0;
        while rest < bytes.len() {
            let remaining = &bytes[rest..];
            let mut stmt = std::ptr::null_mut();
            let mut tail: *const c_char = std::ptr::null();
            // SAFETY: `remaining` is valid for its length (not NUL-terminated, so the length
            // is given); `tail` points into it, or just past its end.
            let rc = unsafe {
                ffi::sqlite3_prepare_v3(
                    self.db.as_ptr(),
                    remaining.as_ptr().cast::<c_char>(),
                    c_int::try_from(remaining.len()).map_err(|_| "script too long")?,
                    ffi::SQLITE_PREPARE_PERSISTENT,
                    &mut stmt,
                    &mut tail,
                )
            };
            if rc != ffi::SQLITE_OK {
                let e = self.error();
                finalize(statements);
                return Err(e);
            }
            // SAFETY: SQLite sets `tail` within (or at the end of) `remaining`.
            let used = unsafe { tail.offset_from(remaining.as_ptr().cast::<c_char>()) };
            rest += usize::try_from(used).unwrap_or(remaining.len()).max(1);
            // Only white space or a comment was left: no statement.
            let Some(stmt) = NonNull::new(stmt) else {
                continue;
            };
            // SAFETY: a freshly prepared statement.
            let params = unsafe { ffi::sqlite3_bind_parameter_count(stmt.as_ptr()) };
            statements.push(Statement {
                stmt,
                params: usize::try_from(params).unwrap_or(0),
            });
        }
        Ok(statements)
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        for (_, statements) in self.scripts.drain() {
            for s in statements {
                // SAFETY: statements of the open connection, not used again.
                unsafe { ffi::sqlite3_finalize(s.stmt.as_ptr()) };
            }
        }
        if self.in_transaction() {
            let _ = self.exec("ROLLBACK");
        }
        // SAFETY: every statement is finalized; the connection is not used again.
        unsafe { ffi::sqlite3_close(self.db.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Direct {
        let path = dir.join("direct.sqlite");
        std::fs::File::create(&path).unwrap();
        Direct::open(
            &path,
            1000,
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, n INTEGER)",
        )
        .unwrap()
    }

    #[test]
    fn a_script_binds_across_statements_and_answers_its_first_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(dir.path());
        const SCRIPT: &str = "BEGIN; INSERT INTO t VALUES (?, ?); INSERT INTO t VALUES (?, ?);
            SELECT group_concat(k || '=' || coalesce(n, 'null'), ',') FROM t; COMMIT;";
        let text = String::from("b");
        let answer = db
            .run(
                SCRIPT,
                &[Arg::Text("a"), Arg::Int(1), Arg::Text(&text), Arg::Null],
            )
            .unwrap();
        assert_eq!(answer.as_deref(), Some("a=1,b=null"));
        // Prepared once, then reused; values past the end of the arguments are NULL, not the
        // last run's.
        let answer = db.run(SCRIPT, &[Arg::Text("c"), Arg::Int(3), Arg::Text("d")]);
        assert_eq!(answer.unwrap().as_deref(), Some("a=1,b=null,c=3,d=null"));
        assert_eq!(db.scripts.len(), 1);
        assert_eq!(
            db.query_text("PRAGMA synchronous").unwrap().as_deref(),
            Some("2")
        );
    }

    #[test]
    fn a_failed_statement_stops_the_script_and_leaves_its_transaction_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open(dir.path());
        const SCRIPT: &str = "BEGIN; INSERT INTO t VALUES (?, 1); INSERT INTO t VALUES (?, 2); \
            COMMIT;";
        let e = db
            .run(SCRIPT, &[Arg::Text("x"), Arg::Text("x")])
            .unwrap_err();
        assert!(e.contains("UNIQUE"), "{e}");
        assert!(db.in_transaction());
        db.exec("ROLLBACK").unwrap();
        assert!(!db.in_transaction());
        assert_eq!(
            db.query_text("SELECT count(*) FROM t").unwrap().as_deref(),
            Some("0")
        );
        // Too many values for the script's parameters: refused before anything runs.
        let e = db
            .run(SCRIPT, &[Arg::Text("y"), Arg::Text("z"), Arg::Int(3)])
            .unwrap_err();
        assert!(e.contains("3 values"), "{e}");
        assert!(!db.in_transaction());
        // A bad script is refused whole.
        assert!(db.run("SELECT 1; SELEC 2", &[]).is_err());
        assert!(Direct::open(&dir.path().join("missing/x.sqlite"), 10, "").is_err());
    }
}
