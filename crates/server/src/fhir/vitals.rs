//! Vital-sign sets as FHIR R4 vital-signs Observations (the base
//! specification's vital signs profiles, category `vital-signs`). One stored
//! set becomes one Observation per measurement it holds; blood pressure is
//! one panel Observation (85354-9) with a systolic (8480-6) and a diastolic
//! (8462-4) component. An Observation's id is the set's id and a suffix
//! naming the measurement (`<set id>-bp`, `-hr`, …), so it is stable and the
//! set is found from it.

use domain::vitals::Measure;
use serde_json::{json, Value};
use store::vitals::VitalsRow;

use super::resources::{instant, interpretation, reference, LOINC, UCUM};

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";

/// One kind of vital-sign Observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// 1.. (0 is a lab result), the order of the Observations of one set
    pub part: u8,
    pub suffix: &'static str,
    /// The LOINC codes of `Observation.code` (the first is the profile's)
    pub codes: &'static [(&'static str, &'static str)],
    /// The base specification's profile
    pub profile: &'static str,
    /// The measure carrying the value; `None` for the blood pressure panel
    pub measure: Option<Measure>,
    /// Stored columns of which one must be present
    pub columns: &'static [&'static str],
}

/// Every kind, in `part` order.
pub const KINDS: [Kind; 8] = [
    Kind {
        part: 1,
        suffix: "bp",
        codes: &[("85354-9", "Blood pressure panel with all children optional")],
        profile: "http://hl7.org/fhir/StructureDefinition/bp",
        measure: None,
        columns: &["systolic", "diastolic"],
    },
    Kind {
        part: 2,
        suffix: "hr",
        codes: &[("8867-4", "Heart rate")],
        profile: "http://hl7.org/fhir/StructureDefinition/heartrate",
        measure: Some(Measure::HeartRate),
        columns: &["heart_rate"],
    },
    Kind {
        part: 3,
        suffix: "rr",
        codes: &[("9279-1", "Respiratory rate")],
        profile: "http://hl7.org/fhir/StructureDefinition/resprate",
        measure: Some(Measure::RespiratoryRate),
        columns: &["respiratory_rate"],
    },
    Kind {
        part: 4,
        suffix: "temp",
        codes: &[("8310-5", "Body temperature")],
        profile: "http://hl7.org/fhir/StructureDefinition/bodytemp",
        measure: Some(Measure::Temperature),
        columns: &["temperature"],
    },
    Kind {
        part: 5,
        suffix: "spo2",
        codes: &[
            (
                "59408-5",
                "Oxygen saturation in Arterial blood by Pulse oximetry",
            ),
            ("2708-6", "Oxygen saturation in Arterial blood"),
        ],
        profile: "http://hl7.org/fhir/StructureDefinition/oxygensat",
        measure: Some(Measure::Spo2),
        columns: &["spo2"],
    },
    Kind {
        part: 6,
        suffix: "wt",
        codes: &[("29463-7", "Body weight")],
        profile: "http://hl7.org/fhir/StructureDefinition/bodyweight",
        measure: Some(Measure::WeightKg),
        columns: &["weight_kg"],
    },
    Kind {
        part: 7,
        suffix: "ht",
        codes: &[("8302-2", "Body height")],
        profile: "http://hl7.org/fhir/StructureDefinition/bodyheight",
        measure: Some(Measure::HeightCm),
        columns: &["height_cm"],
    },
    Kind {
        part: 8,
        suffix: "bmi",
        codes: &[("39156-5", "Body mass index (BMI) [Ratio]")],
        profile: "http://hl7.org/fhir/StructureDefinition/bmi",
        measure: Some(Measure::Bmi),
        columns: &["bmi"],
    },
];

const SYSTOLIC: (&str, &str) = ("8480-6", "Systolic blood pressure");
const DIASTOLIC: (&str, &str) = ("8462-4", "Diastolic blood pressure");

/// The kind with this id suffix or part.
pub fn by_suffix(s: &str) -> Option<Kind> {
    KINDS.into_iter().find(|k| k.suffix == s)
}

pub fn by_part(p: u8) -> Option<Kind> {
    KINDS.into_iter().find(|k| k.part == p)
}

/// The kind whose `Observation.code` carries this LOINC code (the `code`
/// search parameter matches `Observation.code` only, so the blood pressure
/// components' codes find nothing; search 85354-9 for blood pressure).
pub fn by_code(code: &str) -> Option<Kind> {
    KINDS
        .into_iter()
        .find(|k| k.codes.iter().any(|(c, _)| *c == code))
}

/// UCUM code and the unit as shown.
fn ucum(m: Measure) -> (&'static str, &'static str) {
    match m {
        Measure::Systolic | Measure::Diastolic => ("mm[Hg]", "mmHg"),
        Measure::HeartRate => ("/min", "beats/minute"),
        Measure::RespiratoryRate => ("/min", "breaths/minute"),
        Measure::Temperature => ("Cel", "°C"),
        Measure::Spo2 => ("%", "%"),
        Measure::WeightKg => ("kg", "kg"),
        Measure::HeightCm => ("cm", "cm"),
        Measure::Bmi => ("kg/m2", "kg/m2"),
    }
}

fn value(v: &VitalsRow, m: Measure) -> Option<f64> {
    match m {
        Measure::Systolic => v.systolic,
        Measure::Diastolic => v.diastolic,
        Measure::HeartRate => v.heart_rate,
        Measure::RespiratoryRate => v.respiratory_rate,
        Measure::Temperature => v.temperature,
        Measure::Spo2 => v.spo2,
        Measure::WeightKg => v.weight_kg,
        Measure::HeightCm => v.height_cm,
        Measure::Bmi => v.bmi,
    }
}

fn quantity(m: Measure, x: f64) -> Value {
    let (code, unit) = ucum(m);
    json!({ "value": x, "unit": unit, "system": UCUM, "code": code })
}

fn codeable(codes: &[(&str, &str)]) -> Value {
    let coding: Vec<Value> = codes
        .iter()
        .map(|(c, d)| json!({ "system": LOINC, "code": c, "display": d }))
        .collect();
    json!({ "coding": coding, "text": codes.first().map(|c| c.1).unwrap_or_default() })
}

/// The value, interpretation (from the flag stored with the set) and the
/// adult reference range of one measure, as members of an Observation or
/// of a component.
fn measured(v: &VitalsRow, flags: &serde_json::Map<String, Value>, m: Measure) -> Value {
    let mut out = serde_json::Map::new();
    match value(v, m) {
        Some(x) => {
            out.insert("valueQuantity".into(), quantity(m, x));
        }
        None => {
            out.insert(
                "dataAbsentReason".into(),
                json!({ "coding": [{ "system": ABSENT, "code": "not-performed", "display": "Not Performed" }] }),
            );
        }
    }
    if let Some((code, display)) = flags
        .get(m.key())
        .and_then(Value::as_str)
        .and_then(domain::labs::LabFlag::parse)
        .map(interpretation)
    {
        out.insert(
            "interpretation".into(),
            json!([{ "coding": [{ "system": super::resources::INTERPRETATION, "code": code, "display": display }] }]),
        );
    }
    if let Some(r) = m.range().filter(|r| r.low.is_some() || r.high.is_some()) {
        let mut range = serde_json::Map::new();
        if let Some(lo) = r.low {
            range.insert("low".into(), quantity(m, lo));
        }
        if let Some(hi) = r.high {
            range.insert("high".into(), quantity(m, hi));
        }
        range.insert("text".into(), json!("adult range (see docs/VITALS.md)"));
        out.insert("referenceRange".into(), json!([Value::Object(range)]));
    }
    Value::Object(out)
}

/// The Observation of one kind of a set, if the set holds that measurement.
pub fn observation(v: &VitalsRow, k: Kind) -> Option<Value> {
    let present = match k.measure {
        Some(m) => value(v, m).is_some(),
        None => v.systolic.is_some() || v.diastolic.is_some(),
    };
    if !present {
        return None;
    }
    let flags: serde_json::Map<String, Value> = serde_json::from_str(&v.flags).unwrap_or_default();
    let mut o = json!({
        "resourceType": "Observation",
        "id": format!("{}-{}", v.id, k.suffix),
        "meta": { "lastUpdated": instant(v.entered_at), "profile": [k.profile] },
        "status": "final",
        "category": [{ "coding": [{ "system": CATEGORY, "code": "vital-signs", "display": "Vital Signs" }], "text": "Vital Signs" }],
        "code": codeable(k.codes),
        "subject": reference("Patient", v.patient_id),
        "effectiveDateTime": instant(v.recorded_at),
        "issued": instant(v.entered_at),
        "performer": [reference("Practitioner", v.recorded_by)],
    });
    let extra = match k.measure {
        Some(m) => measured(v, &flags, m),
        None => {
            let component = |m: Measure, code: (&str, &str)| {
                let mut c = measured(v, &flags, m);
                c["code"] = codeable(&[code]);
                c
            };
            json!({ "component": [
                component(Measure::Systolic, SYSTOLIC),
                component(Measure::Diastolic, DIASTOLIC),
            ] })
        }
    };
    if let (Some(obj), Value::Object(extra)) = (o.as_object_mut(), extra) {
        obj.extend(extra);
    }
    Some(o)
}

/// Every Observation of a set, with its part, in part order.
pub fn observations(v: &VitalsRow) -> Vec<(u8, Value)> {
    KINDS
        .into_iter()
        .filter_map(|k| observation(v, k).map(|o| (k.part, o)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_in_part_order_and_codes_unique() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(usize::from(k.part), i + 1);
            assert_eq!(by_suffix(k.suffix), Some(*k));
            assert_eq!(by_part(k.part), Some(*k));
            for (c, _) in k.codes {
                assert_eq!(by_code(c), Some(*k));
            }
        }
        assert_eq!(
            by_code("8480-6"),
            None,
            "components are not Observation.code"
        );
        assert_eq!(by_code("2708-6").map(|k| k.suffix), Some("spo2"));
    }
}
