//! The database a command works on.

use anyhow::Context;

/// The database of `DATABASE_URL`.
pub(crate) async fn connect(cfg: &server::Config) -> anyhow::Result<store::Db> {
    store::Db::connect(&cfg.database_url)
        .await
        .context("cannot open the database named by DATABASE_URL")
}
