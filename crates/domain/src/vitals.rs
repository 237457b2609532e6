//! Vital signs: units, plausible input ranges, adult reference ranges and
//! flags (the same inclusive rules as lab results: a value equal to a normal
//! limit is normal, a value equal to a critical limit is critical), and BMI.
//!
//! Sources of the adult ranges (see also docs/VITALS.md):
//! * NEWS2 — Royal College of Physicians, *National Early Warning Score
//!   (NEWS) 2*, 2017: the single-parameter "red" scores (3) give the
//!   critical limits of respiratory rate (≤ 8, ≥ 25 /min), SpO₂ on scale 1
//!   (≤ 91 %), systolic pressure (≤ 90 mmHg), pulse (≤ 40, ≥ 131 /min) and
//!   temperature (≤ 35.0 °C); its zero-score bands give the normal ranges of
//!   respiratory rate (12–20), SpO₂ (≥ 96 %) and temperature (36.1–38.0 °C).
//! * ACC/AHA 2017 high blood pressure guideline (Whelton et al.,
//!   Hypertension 2018;71:e13): normal < 120/80, stage 1 from 130/80, and
//!   hypertensive crisis above 180/120 — so systolic is high from 130 and
//!   diastolic from 80, and 180 systolic or 120 diastolic is critical.
//! * American Heart Association, resting adult heart rate 60–100 /min.
//! * Low blood pressure below 90/60 mmHg (NHS, "Low blood pressure"); the
//!   systolic low limit is NEWS2's 100 (91–100 scores 2).
//! * WHO BMI classes: underweight < 18.5, normal 18.5–24.9, overweight ≥ 25.
//!
//! Critical temperature high (≥ 40.0 °C, hyperpyrexia) is this project's
//! choice: NEWS2's highest band (≥ 39.1 °C) scores only 2.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::account::FieldError;
use crate::labs::{classify_value, LabFlag};

/// One kind of measurement in a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Measure {
    Systolic,
    Diastolic,
    HeartRate,
    RespiratoryRate,
    Temperature,
    Spo2,
    WeightKg,
    HeightCm,
    Bmi,
}

/// Normal range and critical limits (inclusive), any end may be absent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub critical_low: Option<f64>,
    pub critical_high: Option<f64>,
}

impl Measure {
    pub const ALL: [Measure; 9] = [
        Measure::Systolic,
        Measure::Diastolic,
        Measure::HeartRate,
        Measure::RespiratoryRate,
        Measure::Temperature,
        Measure::Spo2,
        Measure::WeightKg,
        Measure::HeightCm,
        Measure::Bmi,
    ];

    /// The JSON field name (and the key of the stored flags).
    pub fn key(self) -> &'static str {
        match self {
            Measure::Systolic => "systolic",
            Measure::Diastolic => "diastolic",
            Measure::HeartRate => "heartRate",
            Measure::RespiratoryRate => "respiratoryRate",
            Measure::Temperature => "temperature",
            Measure::Spo2 => "spo2",
            Measure::WeightKg => "weightKg",
            Measure::HeightCm => "heightCm",
            Measure::Bmi => "bmi",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Measure::Systolic => "Systolic BP",
            Measure::Diastolic => "Diastolic BP",
            Measure::HeartRate => "Heart rate",
            Measure::RespiratoryRate => "Respiratory rate",
            Measure::Temperature => "Temperature",
            Measure::Spo2 => "SpO₂",
            Measure::WeightKg => "Weight",
            Measure::HeightCm => "Height",
            Measure::Bmi => "BMI",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Measure::Systolic | Measure::Diastolic => "mmHg",
            Measure::HeartRate | Measure::RespiratoryRate => "/min",
            Measure::Temperature => "°C",
            Measure::Spo2 => "%",
            Measure::WeightKg => "kg",
            Measure::HeightCm => "cm",
            Measure::Bmi => "kg/m²",
        }
    }

    /// What a measurement in this unit can plausibly be; anything outside is
    /// a typing or unit error (a temperature of 98.6 is Fahrenheit).
    pub fn plausible(self) -> (f64, f64) {
        match self {
            Measure::Systolic => (40.0, 300.0),
            Measure::Diastolic => (20.0, 200.0),
            Measure::HeartRate => (20.0, 300.0),
            Measure::RespiratoryRate => (2.0, 80.0),
            Measure::Temperature => (25.0, 45.0),
            Measure::Spo2 => (50.0, 100.0),
            Measure::WeightKg => (0.3, 500.0),
            Measure::HeightCm => (30.0, 272.0),
            Measure::Bmi => (5.0, 150.0),
        }
    }

    /// The adult range (see the module's sources); weight and height have
    /// none and are never flagged.
    pub fn range(self) -> Option<Range> {
        let r = |low, high, critical_low, critical_high| {
            Some(Range {
                low,
                high,
                critical_low,
                critical_high,
            })
        };
        match self {
            Measure::Systolic => r(Some(100.0), Some(129.0), Some(90.0), Some(180.0)),
            Measure::Diastolic => r(Some(60.0), Some(79.0), None, Some(120.0)),
            Measure::HeartRate => r(Some(60.0), Some(100.0), Some(40.0), Some(131.0)),
            Measure::RespiratoryRate => r(Some(12.0), Some(20.0), Some(8.0), Some(25.0)),
            Measure::Temperature => r(Some(36.1), Some(38.0), Some(35.0), Some(40.0)),
            Measure::Spo2 => r(Some(96.0), None, Some(91.0), None),
            Measure::Bmi => r(Some(18.5), Some(24.9), None, None),
            Measure::WeightKg | Measure::HeightCm => None,
        }
    }

    /// The flag of `value`, if this measure has a range.
    pub fn flag(self, value: f64) -> Option<LabFlag> {
        let r = self.range()?;
        classify_value(value, r.low, r.high, r.critical_low, r.critical_high)
    }
}

/// A set as typed: any measurement may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Entered {
    pub systolic: Option<f64>,
    pub diastolic: Option<f64>,
    pub heart_rate: Option<f64>,
    pub respiratory_rate: Option<f64>,
    pub temperature: Option<f64>,
    pub spo2: Option<f64>,
    pub weight_kg: Option<f64>,
    pub height_cm: Option<f64>,
}

impl Entered {
    fn measures(&self) -> [(Measure, Option<f64>); 8] {
        [
            (Measure::Systolic, self.systolic),
            (Measure::Diastolic, self.diastolic),
            (Measure::HeartRate, self.heart_rate),
            (Measure::RespiratoryRate, self.respiratory_rate),
            (Measure::Temperature, self.temperature),
            (Measure::Spo2, self.spo2),
            (Measure::WeightKg, self.weight_kg),
            (Measure::HeightCm, self.height_cm),
        ]
    }
}

/// A validated set with its BMI and flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub entered: Entered,
    pub bmi: Option<f64>,
    /// Flag of every measurement that has a range, by [`Measure::key`].
    pub flags: BTreeMap<&'static str, LabFlag>,
    pub critical: bool,
    pub abnormal: bool,
}

/// Body mass index from weight and height, to one decimal.
pub fn bmi(weight_kg: f64, height_cm: f64) -> f64 {
    let m = height_cm / 100.0;
    (weight_kg / (m * m) * 10.0).round() / 10.0
}

/// Validate a set (at least one measurement, each finite and plausible in
/// its unit, diastolic below systolic) and flag it. BMI uses the set's
/// height, else `known_height_cm` (the patient's latest recorded height).
pub fn check(e: &Entered, known_height_cm: Option<f64>) -> Result<Checked, Vec<FieldError>> {
    let mut errors = Vec::new();
    let present: Vec<(Measure, f64)> = e
        .measures()
        .into_iter()
        .filter_map(|(m, v)| v.map(|v| (m, v)))
        .collect();
    if present.is_empty() {
        errors.push(FieldError::new(
            "body",
            "must contain at least one measurement",
        ));
    }
    for &(m, v) in &present {
        let (lo, hi) = m.plausible();
        if !v.is_finite() || v < lo || v > hi {
            let mut msg = format!("must be between {lo} and {hi} {}", m.unit());
            if m == Measure::Temperature && (77.0..=113.0).contains(&v) {
                msg.push_str(" (this looks like °F; enter °C)");
            }
            if m == Measure::HeightCm && (0.3..=2.72).contains(&v) {
                msg.push_str(" (this looks like metres; enter centimetres)");
            }
            errors.push(FieldError::new(m.key(), msg));
        }
    }
    if let (Some(s), Some(d)) = (e.systolic, e.diastolic) {
        if d >= s {
            errors.push(FieldError::new("diastolic", "must be below systolic"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let bmi = match (e.weight_kg, e.height_cm.or(known_height_cm)) {
        (Some(w), Some(h)) => Some(bmi(w, h)),
        _ => None,
    };
    let mut flags = BTreeMap::new();
    for (m, v) in present.into_iter().chain(bmi.map(|b| (Measure::Bmi, b))) {
        if let Some(f) = m.flag(v) {
            flags.insert(m.key(), f);
        }
    }
    Ok(Checked {
        entered: *e,
        bmi,
        critical: flags.values().any(|f| f.is_critical()),
        abnormal: flags.values().any(|f| f.is_abnormal()),
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(m: Measure, v: f64) -> Option<&'static str> {
        m.flag(v).map(LabFlag::as_str)
    }

    #[test]
    fn limits_are_inclusive_like_labs() {
        use Measure::*;
        let cases = [
            (Systolic, 90.0, "critical_low"),
            (Systolic, 91.0, "low"),
            (Systolic, 100.0, "normal"),
            (Systolic, 129.0, "normal"),
            (Systolic, 130.0, "high"),
            (Systolic, 179.0, "high"),
            (Systolic, 180.0, "critical_high"),
            (Diastolic, 59.0, "low"),
            (Diastolic, 79.0, "normal"),
            (Diastolic, 80.0, "high"),
            (Diastolic, 120.0, "critical_high"),
            (HeartRate, 40.0, "critical_low"),
            (HeartRate, 60.0, "normal"),
            (HeartRate, 100.0, "normal"),
            (HeartRate, 101.0, "high"),
            (HeartRate, 131.0, "critical_high"),
            (RespiratoryRate, 8.0, "critical_low"),
            (RespiratoryRate, 12.0, "normal"),
            (RespiratoryRate, 20.0, "normal"),
            (RespiratoryRate, 21.0, "high"),
            (RespiratoryRate, 25.0, "critical_high"),
            (Temperature, 35.0, "critical_low"),
            (Temperature, 36.0, "low"),
            (Temperature, 36.1, "normal"),
            (Temperature, 38.0, "normal"),
            (Temperature, 38.1, "high"),
            (Temperature, 40.0, "critical_high"),
            (Spo2, 91.0, "critical_low"),
            (Spo2, 95.0, "low"),
            (Spo2, 96.0, "normal"),
            (Spo2, 100.0, "normal"),
            (Bmi, 18.4, "low"),
            (Bmi, 18.5, "normal"),
            (Bmi, 24.9, "normal"),
            (Bmi, 25.0, "high"),
        ];
        for (m, v, want) in cases {
            assert_eq!(flag(m, v), Some(want), "{m:?} {v}");
        }
        assert_eq!(flag(WeightKg, 300.0), None);
    }

    #[test]
    fn sets_are_validated_and_flagged() {
        let e = Entered {
            systolic: Some(182.0),
            diastolic: Some(95.0),
            weight_kg: Some(80.0),
            ..Entered::default()
        };
        let c = check(&e, Some(180.0)).unwrap();
        assert_eq!(c.bmi, Some(24.7));
        assert!(c.critical && c.abnormal);
        assert_eq!(c.flags["systolic"], LabFlag::CriticalHigh);
        assert_eq!(c.flags["bmi"], LabFlag::Normal);

        assert!(check(&Entered::default(), None).is_err());
        let f = Entered {
            temperature: Some(98.6),
            ..Entered::default()
        };
        let errs = check(&f, None).unwrap_err();
        assert_eq!(errs[0].field, "temperature");
        assert!(errs[0].message.contains("°F"));
        let inverted = Entered {
            systolic: Some(80.0),
            diastolic: Some(120.0),
            ..Entered::default()
        };
        assert_eq!(check(&inverted, None).unwrap_err()[0].field, "diastolic");
        let nan = Entered {
            spo2: Some(f64::NAN),
            ..Entered::default()
        };
        assert!(check(&nan, None).is_err());
    }
}
