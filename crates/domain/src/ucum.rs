//! UCUM codes for the unit spellings results arrive with, so FHIR
//! `Quantity.code` is a real UCUM code (system `http://unitsofmeasure.org`)
//! or absent: an unknown spelling is shown as text only, never guessed.

/// The UCUM code of `unit`, if it is a spelling we know.
pub fn code(unit: &str) -> Option<&'static str> {
    let u: String = unit
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            'µ' | 'μ' => 'u',
            '^' => '*',
            _ => c,
        })
        .collect::<String>()
        .to_lowercase()
        .replace("mcg", "ug")
        .replace("x10*", "10*");
    let code = match u.as_str() {
        "%" | "percent" => "%",
        "10*3/ul" | "k/ul" | "thou/ul" => "10*3/uL",
        "10*6/ul" | "m/ul" | "mill/ul" => "10*6/uL",
        "10*9/l" => "10*9/L",
        "10*12/l" => "10*12/L",
        "u/l" | "units/l" => "U/L",
        "iu/l" | "[iu]/l" => "[IU]/L",
        "miu/l" | "m[iu]/l" => "m[IU]/L",
        "uiu/ml" | "u[iu]/ml" => "u[IU]/mL",
        "miu/ml" | "m[iu]/ml" => "m[IU]/mL",
        "fl" => "fL",
        "pg" => "pg",
        "g/dl" => "g/dL",
        "g/l" => "g/L",
        "mg/dl" => "mg/dL",
        "mg/l" => "mg/L",
        "ug/dl" => "ug/dL",
        "ug/l" => "ug/L",
        "ng/dl" => "ng/dL",
        "ng/ml" => "ng/mL",
        "ng/l" => "ng/L",
        "pg/ml" => "pg/mL",
        "mmol/l" => "mmol/L",
        "umol/l" => "umol/L",
        "nmol/l" => "nmol/L",
        "pmol/l" => "pmol/L",
        "meq/l" => "meq/L",
        "ml/min/1.73m2" | "ml/min/1.73m*2" | "ml/min/{1.73_m2}" => "mL/min/{1.73_m2}",
        "mm/h" | "mm/hr" => "mm/h",
        "s" | "sec" | "secs" => "s",
        "{inr}" | "inr" => "{INR}",
        "{ratio}" | "ratio" => "{ratio}",
        "mmhg" | "mm[hg]" => "mm[Hg]",
        "kg" => "kg",
        "g" => "g",
        "cm" => "cm",
        "/min" | "bpm" | "beats/min" => "/min",
        "cel" | "°c" | "degc" => "Cel",
        "kg/m2" => "kg/m2",
        _ => return None,
    };
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_spellings_map_to_ucum_and_unknown_ones_do_not() {
        assert_eq!(code("mg/dL"), Some("mg/dL"));
        assert_eq!(code(" mg/dl "), Some("mg/dL"));
        assert_eq!(code("10^3/µL"), Some("10*3/uL"));
        assert_eq!(code("mEq/L"), Some("meq/L"));
        assert_eq!(code("mIU/L"), Some("m[IU]/L"));
        assert_eq!(code("mL/min/1.73m2"), Some("mL/min/{1.73_m2}"));
        assert_eq!(code("{INR}"), Some("{INR}"));
        assert_eq!(code("furlongs"), None);
        assert_eq!(code(""), None);
    }
}
