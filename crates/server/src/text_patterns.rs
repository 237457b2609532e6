//! The text rules of request fields, stated once for the OpenAPI document.
//!
//! A field names its class as its pattern, `#[schema(pattern =
//! "amal:<class>")]` (utoipa's `pattern` takes only a literal, so the long
//! expressions had been copied onto 37 fields); [`apply`] swaps each class
//! name for its expression when the document is built. The classes follow `domain::text` (what the server refuses).

use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

/// Tag → pattern: single-line text with at least one non-blank character;
/// single-line text; free text (tabs and line breaks allowed) with at least
/// one non-blank character; free text.
const CLASSES: [(&str, &str); 4] = [
    (
        "amal:required-line",
        r"^[^\u0000-\u0008\u000a-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u0008\u000a-\u001f\u007f-\u009f]*$",
    ),
    (
        "amal:line",
        r"^[^\u0000-\u0008\u000a-\u001f\u007f-\u009f]*$",
    ),
    (
        "amal:required-text",
        r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$",
    ),
    (
        "amal:text",
        r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$",
    ),
];

/// Replace every text-class tag under `schema` by its pattern.
pub fn apply(schema: &mut Schema) {
    match schema {
        Schema::Object(o) => {
            if let Some(tag) = &o.pattern {
                if let Some((_, pattern)) = CLASSES.iter().find(|(t, _)| t == tag) {
                    o.pattern = Some((*pattern).to_string());
                }
            }
            o.properties.values_mut().for_each(apply_ref);
        }
        Schema::Array(a) => {
            if let utoipa::openapi::schema::ArrayItems::RefOrSchema(items) = &mut a.items {
                apply_ref(items);
            }
        }
        Schema::AllOf(s) => s.items.iter_mut().for_each(apply_ref),
        Schema::OneOf(s) => s.items.iter_mut().for_each(apply_ref),
        Schema::AnyOf(s) => s.items.iter_mut().for_each(apply_ref),
        _ => {}
    }
}

fn apply_ref(r: &mut RefOr<Schema>) {
    if let RefOr::T(s) = r {
        apply(s);
    }
}
