//! Column decoding into domain enums.
//!
//! A NOT NULL column decodes with `#[sqlx(try_from = "String")]` over the
//! enum's `TryFrom<String>`; a nullable one with
//! `#[sqlx(try_from = "crate::decode::NullableText")]` into `Option<Enum>`.
//! An unknown stored value is a column decode error (`StoreError::Database`,
//! the internal-error path), never a panic and never a string passed on.

use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Type, ValueRef};

/// A nullable text column on its way to an `Option` of a domain enum.
pub struct NullableText(Option<String>);

impl<DB: Database> Type<DB> for NullableText
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

impl<'r, DB: Database> Decode<'r, DB> for NullableText
where
    String: Decode<'r, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            Ok(NullableText(None))
        } else {
            <String as Decode<'r, DB>>::decode(value).map(|s| NullableText(Some(s)))
        }
    }
}

/// `Option<Enum>: TryFrom<NullableText>` for each nullable enum column.
macro_rules! nullable {
    ($($ty:ty),*) => {$(
        impl TryFrom<NullableText> for Option<$ty> {
            type Error = domain::states::UnknownState;
            fn try_from(v: NullableText) -> Result<Self, Self::Error> {
                v.0.map(<$ty>::try_from).transpose()
            }
        }
    )*};
}

nullable!(domain::labs::LabFlag);
