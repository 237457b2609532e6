//! FHIR search parameters: which ones each type takes, date prefixes and
//! paging. Pure functions; an unsupported parameter is an error (400), not
//! silently ignored, so a client never mistakes an unfiltered page for a
//! filtered one.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use store::fhir::{Bound, PatientFilter, Search};
use uuid::Uuid;

/// The resource types this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Patient,
    AllergyIntolerance,
    Condition,
    MedicationRequest,
    Observation,
    DocumentReference,
    Practitioner,
}

impl ResourceType {
    pub const ALL: [ResourceType; 7] = [
        ResourceType::Patient,
        ResourceType::AllergyIntolerance,
        ResourceType::Condition,
        ResourceType::MedicationRequest,
        ResourceType::Observation,
        ResourceType::DocumentReference,
        ResourceType::Practitioner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Patient => "Patient",
            ResourceType::AllergyIntolerance => "AllergyIntolerance",
            ResourceType::Condition => "Condition",
            ResourceType::MedicationRequest => "MedicationRequest",
            ResourceType::Observation => "Observation",
            ResourceType::DocumentReference => "DocumentReference",
            ResourceType::Practitioner => "Practitioner",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The search parameters of this type beyond `_id`, `_lastUpdated`,
    /// `_count` (with their FHIR types, for the CapabilityStatement).
    pub fn params(self) -> &'static [(&'static str, &'static str)] {
        match self {
            ResourceType::Patient => &[
                ("name", "string"),
                ("family", "string"),
                ("given", "string"),
                ("birthdate", "date"),
                ("identifier", "token"),
            ],
            ResourceType::Observation => &[
                ("patient", "reference"),
                ("code", "token"),
                ("category", "token"),
            ],
            ResourceType::Practitioner => &[],
            _ => &[("patient", "reference")],
        }
    }
}

/// Common parameters every search takes.
pub const COMMON: [(&str, &str); 2] = [("_id", "token"), ("_lastUpdated", "date")];

/// The largest and the default page.
pub const MAX_COUNT: i64 = 200;
pub const DEFAULT_COUNT: i64 = 50;

#[derive(Debug, Clone, PartialEq)]
pub struct ParamError(pub String);

/// A search, parsed.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub search: Search,
    pub patients: PatientFilter,
    pub code: Option<String>,
    /// A filter that no row can match (e.g. `_id` that is no UUID).
    pub matches_nothing: bool,
    /// The part of `_id` (0: a stored row's own id; 1..: a vital-sign
    /// Observation of the set `search.id`, see [`super::vitals`]).
    pub id_part: Option<u8>,
    /// The part of the previous page's last resource (`search.after`).
    pub after_part: u8,
    /// Observation `category`.
    pub category: Option<Category>,
}

/// The Observation categories we emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Laboratory,
    VitalSigns,
}

/// A FHIR id we issue: a row's UUID, or a set's UUID and the suffix of one
/// of its vital-sign Observations (`<uuid>-bp`), as (id, part).
pub fn split_id(s: &str) -> Option<(Uuid, u8)> {
    if s.len() == 36 {
        return Uuid::parse_str(s).ok().map(|u| (u, 0));
    }
    let (u, suffix) = (s.get(..36)?, s.get(36..)?.strip_prefix('-')?);
    Some((
        Uuid::parse_str(u).ok()?,
        super::vitals::by_suffix(suffix)?.part,
    ))
}

/// The half-open interval a FHIR date/dateTime value stands for, at its
/// precision: `2024` is the whole year, `2024-03-05T10:00Z` one minute.
pub fn interval(v: &str) -> Option<(NaiveDateTime, NaiveDateTime)> {
    let midnight = NaiveTime::MIN;
    let day = |y: i32, m: u32, d: u32| NaiveDate::from_ymd_opt(y, m, d);
    let num = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    match v.len() {
        4 => {
            let y = num(v)? as i32;
            Some((
                day(y, 1, 1)?.and_time(midnight),
                day(y + 1, 1, 1)?.and_time(midnight),
            ))
        }
        7 if v.as_bytes()[4] == b'-' => {
            let y = num(v.get(..4).unwrap_or_default())? as i32;
            let m = num(v.get(5..).unwrap_or_default())?;
            let start = day(y, m, 1)?;
            let end = if m == 12 {
                day(y + 1, 1, 1)?
            } else {
                day(y, m + 1, 1)?
            };
            Some((start.and_time(midnight), end.and_time(midnight)))
        }
        10 => {
            let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
            Some((d.and_time(midnight), d.succ_opt()?.and_time(midnight)))
        }
        _ => {
            // A time needs a zone (FHIR); precision is minutes, seconds or finer.
            let (date, time) = v.split_once('T')?;
            let clock = time.split(['Z', '+', '-']).next()?;
            if clock.len() == time.len() {
                return None;
            }
            let zone = time.get(clock.len()..).unwrap_or_default();
            let (full, step) = match clock.len() {
                5 => (
                    format!("{date}T{clock}:00{zone}"),
                    chrono::Duration::minutes(1),
                ),
                8 => (v.to_string(), chrono::Duration::seconds(1)),
                _ => (v.to_string(), chrono::Duration::microseconds(1)),
            };
            let t = DateTime::parse_from_rfc3339(&full)
                .ok()?
                .with_timezone(&Utc)
                .naive_utc();
            Some((t, t + step))
        }
    }
}

/// A `date` parameter value (`ge2024-01-01`, `2024`, …) as half-open bounds
/// `(at or after, before)`.
pub fn date_bounds(
    raw: &str,
) -> Result<(Option<NaiveDateTime>, Option<NaiveDateTime>), ParamError> {
    let (prefix, value) = match raw.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, raw.get(2..).unwrap_or_default()),
        Some("ne" | "sa" | "eb" | "ap") => {
            return Err(ParamError(
                "date prefixes ne, sa, eb and ap are not supported; use eq, ge, gt, le or lt"
                    .into(),
            ))
        }
        _ => ("eq", raw),
    };
    let (start, end) = interval(value).ok_or_else(|| {
        ParamError("a date must be YYYY, YYYY-MM, YYYY-MM-DD or a dateTime with a time zone".into())
    })?;
    Ok(match prefix {
        "ge" => (Some(start), None),
        "gt" => (Some(end), None),
        "lt" => (None, Some(start)),
        "le" => (None, Some(end)),
        _ => (Some(start), Some(end)),
    })
}

/// `_since` of `$export` and `$everything`: a FHIR instant (a time with
/// its zone, to the second or finer).
pub fn since(v: &str) -> Result<DateTime<Utc>, ParamError> {
    DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ParamError(
                "_since must be an instant with a time zone, e.g. 2026-01-01T00:00:00Z".into(),
            )
        })
}

fn uuid_or_nothing(v: &str, p: &mut Parsed) -> Option<Uuid> {
    let u = Uuid::parse_str(v).ok();
    if u.is_none() {
        p.matches_nothing = true;
    }
    u
}

/// A name for a parameter we refuse, safe to repeat in an error message.
fn shown(name: &str) -> String {
    if name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-:.".contains(c))
    {
        format!("`{name}`")
    } else {
        "a parameter".into()
    }
}

/// Parse the query pairs of a search on `ty`. `_cursor` is the last id of
/// the previous page (from our own `next` link).
pub fn parse(ty: ResourceType, pairs: &[(String, String)]) -> Result<Parsed, ParamError> {
    let mut p = Parsed::default();
    p.search.limit = DEFAULT_COUNT;
    for (k, v) in pairs {
        if k.chars().chain(v.chars()).any(char::is_control) {
            return Err(ParamError(
                "search parameters may not contain control characters".into(),
            ));
        }
        let v = v.trim();
        match k.as_str() {
            "_count" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ParamError("_count must be a whole number".into()))?;
                p.search.limit = n.clamp(1, MAX_COUNT);
            }
            "_cursor" => {
                let text = crate::extract::PageQuery {
                    limit: None,
                    cursor: Some(v.to_string()),
                }
                .cursor_text()
                .ok()
                .flatten()
                .and_then(|t| split_id(&t))
                .ok_or_else(|| ParamError("_cursor is not a cursor this server issued".into()))?;
                p.search.after = Some(text.0);
                p.after_part = text.1;
            }
            "_format" => {
                if !matches!(v, "json" | "application/json" | "application/fhir+json") {
                    return Err(ParamError("only JSON is served (_format=json)".into()));
                }
            }
            "_id" => match split_id(v) {
                Some((id, part)) if part == 0 || ty == ResourceType::Observation => {
                    p.search.id = Some(id);
                    p.id_part = Some(part);
                }
                _ => p.matches_nothing = true,
            },
            "category" if ty == ResourceType::Observation => {
                let code = match v.split_once('|') {
                    Some((sys, c))
                        if sys.is_empty()
                            || sys
                                == "http://terminology.hl7.org/CodeSystem/observation-category" =>
                    {
                        c
                    }
                    Some(_) => "",
                    None => v,
                };
                match code {
                    "laboratory" => p.category = Some(Category::Laboratory),
                    "vital-signs" => p.category = Some(Category::VitalSigns),
                    _ => p.matches_nothing = true,
                }
            }
            "_lastUpdated" => {
                let (ge, lt) = date_bounds(v)?;
                if let Some(t) = ge {
                    p.search.updated.push(Bound::AtOrAfter(t.and_utc()));
                }
                if let Some(t) = lt {
                    p.search.updated.push(Bound::Before(t.and_utc()));
                }
            }
            "patient" if ty.params().iter().any(|(n, _)| *n == "patient") => {
                let id = v.strip_prefix("Patient/").unwrap_or(v);
                p.search.patient = uuid_or_nothing(id, &mut p);
            }
            "code" if ty == ResourceType::Observation => {
                let code = match v.split_once('|') {
                    Some((sys, c)) if sys.is_empty() || sys == super::resources::LOINC => c,
                    Some(_) => {
                        p.matches_nothing = true;
                        ""
                    }
                    None => v,
                };
                p.code = Some(code.to_string());
            }
            "identifier" if ty == ResourceType::Patient => {
                let mrn = match v.split_once('|') {
                    Some((sys, m)) if sys.is_empty() || sys == super::resources::MRN_SYSTEM => m,
                    Some(_) => {
                        p.matches_nothing = true;
                        ""
                    }
                    None => v,
                };
                p.patients.mrn = Some(mrn.to_string());
            }
            "birthdate" if ty == ResourceType::Patient => {
                let (ge, lt) = date_bounds(v)?;
                if v.len() > 12 {
                    return Err(ParamError("birthdate takes a date without a time".into()));
                }
                let d =
                    |t: Option<NaiveDateTime>| t.map(|t| t.date().format("%Y-%m-%d").to_string());
                p.patients.birth_date.push((d(ge), d(lt)));
            }
            "name" | "family" | "given" if ty == ResourceType::Patient => {
                let folded = domain::text::fold(v);
                if folded.is_empty() || folded.chars().count() > 100 {
                    return Err(ParamError(format!("{k} must be 1 to 100 characters")));
                }
                match k.as_str() {
                    "name" => p.patients.name.push(folded),
                    "family" => p.patients.family.push(folded),
                    _ => p.patients.given.push(folded),
                }
            }
            other => {
                return Err(ParamError(format!(
                    "{} is not a search parameter of {} on this server (see /fhir/R4/metadata)",
                    shown(other),
                    ty.as_str()
                )))
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap_or_default()
    }

    #[test]
    fn date_values_stand_for_their_precision() {
        assert_eq!(
            interval("2024"),
            Some((t("2024-01-01T00:00:00"), t("2025-01-01T00:00:00")))
        );
        assert_eq!(
            interval("2024-12"),
            Some((t("2024-12-01T00:00:00"), t("2025-01-01T00:00:00")))
        );
        assert_eq!(
            interval("2024-02-29"),
            Some((t("2024-02-29T00:00:00"), t("2024-03-01T00:00:00")))
        );
        assert_eq!(
            interval("2024-03-05T10:00:00Z"),
            Some((t("2024-03-05T10:00:00"), t("2024-03-05T10:00:01")))
        );
        assert_eq!(
            interval("2024-03-05T10:00+02:00"),
            Some((t("2024-03-05T08:00:00"), t("2024-03-05T08:01:00")))
        );
        assert_eq!(interval("2024-13"), None);
        assert_eq!(interval("yesterday"), None);
        assert_eq!(interval("2024-03-05T10:00:00"), None, "a time needs a zone");
    }

    #[test]
    fn prefixes_make_half_open_bounds() {
        let (s, e) = (t("2024-01-01T00:00:00"), t("2025-01-01T00:00:00"));
        assert_eq!(date_bounds("2024"), Ok((Some(s), Some(e))));
        assert_eq!(date_bounds("ge2024"), Ok((Some(s), None)));
        assert_eq!(date_bounds("gt2024"), Ok((Some(e), None)));
        assert_eq!(date_bounds("lt2024"), Ok((None, Some(s))));
        assert_eq!(date_bounds("le2024"), Ok((None, Some(e))));
        assert!(date_bounds("ne2024").is_err());
        assert!(date_bounds("ge").is_err());
    }

    #[test]
    fn unknown_parameters_are_refused_and_odd_ids_match_nothing() {
        let pairs = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(parse(ResourceType::Patient, &pairs("color", "red")).is_err());
        assert!(parse(ResourceType::Patient, &pairs("name", "a\u{0}b")).is_err());
        assert!(parse(ResourceType::Practitioner, &pairs("patient", "x")).is_err());
        assert!(parse(ResourceType::Observation, &pairs("name", "x")).is_err());
        let p =
            parse(ResourceType::Observation, &pairs("patient", "Patient/nope")).unwrap_or_default();
        assert!(p.matches_nothing);
        let p = parse(ResourceType::Patient, &pairs("_count", "9999")).unwrap_or_default();
        assert_eq!(p.search.limit, MAX_COUNT);
        assert!(parse(ResourceType::Patient, &pairs("_count", "many")).is_err());
        let p = parse(
            ResourceType::Patient,
            &pairs("identifier", "https://dr-amal.invalid/fhir/sid/mrn|123"),
        )
        .unwrap_or_default();
        assert_eq!(p.patients.mrn.as_deref(), Some("123"));
        let p = parse(ResourceType::Patient, &pairs("name", "Núñez")).unwrap_or_default();
        assert_eq!(p.patients.name, vec!["nunez".to_string()]);
        let p = parse(ResourceType::Patient, &pairs("birthdate", "1980")).unwrap_or_default();
        assert_eq!(
            p.patients.birth_date,
            vec![(Some("1980-01-01".into()), Some("1981-01-01".into()))]
        );
    }
}
