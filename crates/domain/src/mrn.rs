//! Medical record numbers and what a patient-search string means.
//!
//! An MRN is nine random digits (the first not zero) and a Luhn check digit,
//! so a mistyped MRN is caught at the desk, and the MRN says nothing about
//! how many patients the clinic has.

/// The Luhn check digit for `digits` (each 0–9, most significant first).
fn luhn_digit(digits: &[u32]) -> u32 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 0 { double(d) } else { d })
        .sum();
    (10 - sum % 10) % 10
}

/// A doubled Luhn digit with its two decimal digits summed.
fn double(d: u32) -> u32 {
    let x = d * 2;
    if x > 9 {
        x - 9
    } else {
        x
    }
}

/// An MRN from nine body digits drawn by `next_digit` (called with the range
/// each digit must fall in), so the randomness stays with the caller.
pub fn generate(mut next_digit: impl FnMut(std::ops::Range<u32>) -> u32) -> String {
    let body: Vec<u32> = (0..9)
        .map(|i| next_digit(if i == 0 { 1..10 } else { 0..10 }).min(9))
        .collect();
    let check = luhn_digit(&body);
    body.iter()
        .chain(std::iter::once(&check))
        .filter_map(|d| char::from_digit(*d, 10))
        .collect()
}

/// True for ten digits whose last is the Luhn check digit of the first nine.
pub fn is_valid(mrn: &str) -> bool {
    let digits: Vec<u32> = mrn.chars().filter_map(|c| c.to_digit(10)).collect();
    match digits.split_last() {
        Some((&check, body)) if mrn.len() == 10 && digits.len() == 10 => luhn_digit(body) == check,
        _ => false,
    }
}

/// What a search box string asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchTerm {
    /// No string: every patient, in name order.
    All,
    /// Ten digits: an MRN.
    Mrn(String),
    /// Four to nine digits: the start of an MRN (typed as you go).
    MrnPrefix(String),
    /// `YYYY-MM-DD`: a birth date.
    BirthDate(String),
    /// Anything else: a name prefix, folded (case and accents removed).
    NamePrefix(String),
}

/// A birth date typed with slashes or dots (`05/10/1991`) is ambiguous:
/// the ISO dates it may mean (day first, then month first; one when both
/// readings agree or only one is a real date). Empty for anything else.
pub fn date_readings(q: &str) -> Vec<String> {
    let parts: Vec<&str> = q.trim().split(['/', '.', '-']).collect();
    let [a, b, y] = parts.as_slice() else {
        return Vec::new();
    };
    if y.len() != 4 || a.is_empty() || b.is_empty() || a.len() > 2 || b.len() > 2 {
        return Vec::new();
    }
    let (Ok(a), Ok(b), Ok(y)) = (a.parse::<u32>(), b.parse::<u32>(), y.parse::<i32>()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (d, m) in [(a, b), (b, a)] {
        if let Some(date) = chrono::NaiveDate::from_ymd_opt(y, m, d) {
            let iso = date.format("%Y-%m-%d").to_string();
            if !out.contains(&iso) {
                out.push(iso);
            }
        }
    }
    out
}

/// Decide what a search string means.
pub fn interpret(q: Option<&str>) -> SearchTerm {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return SearchTerm::All;
    };
    if q.len() == 10 && q.chars().all(|c| c.is_ascii_digit()) {
        return SearchTerm::Mrn(q.to_string());
    }
    if (4..10).contains(&q.len()) && q.chars().all(|c| c.is_ascii_digit()) {
        return SearchTerm::MrnPrefix(q.to_string());
    }
    if chrono::NaiveDate::parse_from_str(q, "%Y-%m-%d").is_ok() {
        return SearchTerm::BirthDate(q.to_string());
    }
    SearchTerm::NamePrefix(crate::text::fold(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_mrns_and_slashed_dates() {
        assert_eq!(
            interpret(Some("12345")),
            SearchTerm::MrnPrefix("12345".into())
        );
        assert_eq!(interpret(Some("123")), SearchTerm::NamePrefix("123".into()));
        assert_eq!(date_readings("05/10/1991"), ["1991-10-05", "1991-05-10"]);
        assert_eq!(date_readings("25/10/1991"), ["1991-10-25"]);
        assert_eq!(date_readings("5.5.1991"), ["1991-05-05"]);
        assert!(date_readings("1991-10-05").is_empty());
        assert!(date_readings("garcia").is_empty());
    }

    #[test]
    fn generated_mrns_are_valid_and_ten_digits() {
        let mut n = 0u32;
        for _ in 0..200 {
            let m = generate(|r| {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                r.start + n % (r.end - r.start)
            });
            assert_eq!(m.len(), 10);
            assert!(!m.starts_with('0'), "{m}");
            assert!(is_valid(&m), "{m}");
        }
    }

    #[test]
    fn a_known_number_checks_and_a_typo_does_not() {
        // The Luhn check digit of 799273987 is 5.
        assert!(is_valid("7992739875"));
        assert!(!is_valid("7992739871"));
        assert!(!is_valid("7992739785"), "swapped neighbours are caught");
        assert!(!is_valid("799273987"));
        assert!(!is_valid("79927398a3"));
    }

    #[test]
    fn queries_are_interpreted() {
        assert_eq!(
            interpret(Some("0123456789")),
            SearchTerm::Mrn("0123456789".into())
        );
        assert_eq!(
            interpret(Some(" 1980-01-02 ")),
            SearchTerm::BirthDate("1980-01-02".into())
        );
        assert_eq!(
            interpret(Some("García")),
            SearchTerm::NamePrefix("garcia".into())
        );
        assert_eq!(interpret(Some("  ")), SearchTerm::All);
        assert_eq!(interpret(None), SearchTerm::All);
        assert_eq!(
            interpret(Some("1980-13-02")),
            SearchTerm::NamePrefix("1980-13-02".into())
        );
    }
}
