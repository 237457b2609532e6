//! Column decoding into domain enums.
//!
//! A NOT NULL column decodes with `#[sqlx(try_from = "String")]` over the
//! enum's `TryFrom<String>`; a nullable one with
//! `#[sqlx(try_from = "crate::decode::Nullable<Enum>")]` into `Option<Enum>`.
//! An unknown stored value is a column decode error naming the column (and,
//! for a nullable one, the value: sqlx 0.8.6 prints a `try_from` error as
//! "unprintable"), which is `StoreError::Database`, the internal-error path:
//! never a panic and never a string passed on.

use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Type, ValueRef};

/// A nullable text column decoded into `Option<T>` through
/// `T: TryFrom<String>`.
pub struct Nullable<T>(Option<T>);

impl<T> From<Nullable<T>> for Option<T> {
    fn from(v: Nullable<T>) -> Self {
        v.0
    }
}

impl<DB: Database, T> Type<DB> for Nullable<T>
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database, T> Decode<'r, DB> for Nullable<T>
where
    String: Decode<'r, DB>,
    T: TryFrom<String>,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(Nullable(None));
        }
        let s = <String as Decode<'r, DB>>::decode(value)?;
        Ok(Nullable(Some(T::try_from(s)?)))
    }
}

#[cfg(test)]
mod tests {
    use domain::account::UserStatus;
    use domain::labs::LabFlag;
    use domain::roles::Role;

    use crate::db::StoreError;
    use crate::sessions::LiveSession;

    #[derive(Debug, sqlx::FromRow)]
    struct Flagged {
        #[sqlx(try_from = "crate::decode::Nullable<LabFlag>")]
        flag: Option<LabFlag>,
    }

    async fn pool() -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap()
    }

    fn live_sql(role: &str) -> String {
        format!(
            "SELECT randomblob(16) AS user_id, '{role}' AS role, 'active' AS status, \
             '2026-01-01T00:00:00+00:00' AS seen_at"
        )
    }

    #[tokio::test]
    async fn a_row_decodes_into_enums_and_an_unknown_value_is_a_store_error() {
        let db = pool().await;
        let ok: LiveSession = sqlx::query_as(&live_sql("nurse"))
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!((ok.role, ok.status), (Role::Nurse, UserStatus::Active));

        let err = sqlx::query_as::<_, LiveSession>(&live_sql("doctor"))
            .fetch_one(&db)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, sqlx::Error::ColumnDecode { index, .. } if index.contains("role")),
            "{err:?}"
        );
        // sqlx 0.8.6 reports a `try_from` error as "unprintable": the message
        // names the column, not the value.
        assert!(err.to_string().contains("column role"), "{err}");
        // Not a fault to retry: the internal-error path.
        let store = StoreError::from(err);
        assert!(matches!(store, StoreError::Database(_)), "{store:?}");
        assert_eq!(store.fault(), None);
    }

    #[tokio::test]
    async fn a_nullable_column_decodes_into_an_option() {
        let db = pool().await;
        let flag = |sql: &'static str| {
            let db = db.clone();
            async move { sqlx::query_as::<_, Flagged>(sql).fetch_one(&db).await }
        };
        assert_eq!(flag("SELECT NULL AS flag").await.unwrap().flag, None);
        assert_eq!(
            flag("SELECT 'critical_high' AS flag").await.unwrap().flag,
            Some(LabFlag::CriticalHigh)
        );
        let err = flag("SELECT 'HH' AS flag").await.unwrap_err();
        assert!(err.to_string().contains("unknown lab flag `HH`"), "{err}");
    }
}
