//! Building a statement with numbered placeholders and its arguments together.

use super::db::Arg;

#[derive(Debug, Default)]
pub(crate) struct Statement {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Statement {
    pub fn new(sql: &str) -> Self {
        Statement {
            sql: sql.to_string(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn bind(&mut self, arg: impl Into<Arg>) -> &mut Self {
        self.args.push(arg.into());
        self.sql.push('$');
        self.sql.push_str(&self.args.len().to_string());
        self
    }

    /// Appends `(p1, p2, ...)` for a list of values.
    pub fn bind_list<T: Into<Arg>>(&mut self, items: impl IntoIterator<Item = T>) -> &mut Self {
        self.sql.push('(');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.sql.push(',');
            }
            self.bind(item);
        }
        self.sql.push(')');
        self
    }
}
