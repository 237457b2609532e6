//! Text folding for search and hygiene checks for stored text.
//!
//! Patient search has to find "José Núñez" when staff type "jose nunez", so
//! names are stored and queried in one folded form produced by [`fold`].
//! Free text typed by users is checked with [`has_forbidden_control_chars`]
//! before it is stored: control characters break logs, exports and terminals
//! and can hide content from a reader, and they never belong in clinical text.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Fold `s` for case- and accent-insensitive matching.
///
/// Lowercases, decomposes (NFKD) and drops combining marks, so "Núñez"
/// becomes "nunez" and compatibility forms such as "ﬁ" or full-width letters
/// become their plain equivalents. Letters that carry no combining mark in
/// Unicode (ø, æ, ß, ł, đ, …) are mapped by hand, because NFKD leaves them
/// alone and people searching type the plain Latin letters. Runs of
/// whitespace collapse to one space and the ends are trimmed.
pub fn fold(s: &str) -> String {
    // Lowercase first: some uppercase letters lowercase into a base letter
    // plus a combining mark (e.g. "İ"), which the next step then removes.
    let lowered = s.to_lowercase();
    let mut out = String::with_capacity(lowered.len());
    let mut pending_space = false;
    for c in lowered.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        match special_letter(c) {
            Some(mapped) => out.push_str(mapped),
            None => out.push(c),
        }
    }
    out
}

/// Latin letters that NFKD does not decompose, mapped to what people type.
fn special_letter(c: char) -> Option<&'static str> {
    Some(match c {
        'ø' => "o",
        'æ' => "ae",
        'œ' => "oe",
        'ß' => "ss",
        'ł' => "l",
        'đ' | 'ð' => "d",
        'þ' => "th",
        'ı' => "i",
        'ħ' => "h",
        'ŧ' => "t",
        'ŀ' => "l",
        'ĸ' => "k",
        'ŋ' => "n",
        _ => return None,
    })
}

/// Whether `s` holds a control character that stored text must not carry.
///
/// Line feed, carriage return and tab are allowed because notes are
/// multi-line. Every other C0 control (U+0000–U+001F), DEL (U+007F) and every
/// C1 control (U+0080–U+009F) is forbidden: NUL truncates strings in C
/// tooling and some databases, escape sequences rewrite terminals that show
/// logs, and none of them has a meaning in clinical text.
pub fn has_forbidden_control_chars(s: &str) -> bool {
    s.chars().any(is_forbidden_control)
}

/// The per-character rule behind [`has_forbidden_control_chars`].
pub fn is_forbidden_control(c: char) -> bool {
    match c {
        '\n' | '\r' | '\t' => false,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_accents_case_and_whitespace() {
        assert_eq!(fold("José  Núñez"), "jose nunez");
        assert_eq!(fold("  ÉLODIE\t\nMÜLLER  "), "elodie muller");
        assert_eq!(fold("François"), "francois");
        assert_eq!(fold("Zoë Brontë"), "zoe bronte");
        assert_eq!(fold("Dvořák"), "dvorak");
        assert_eq!(fold("Ñandú"), "nandu");
    }

    #[test]
    fn folds_letters_without_decomposition() {
        assert_eq!(fold("Ørsted"), "orsted");
        assert_eq!(fold("Æsir"), "aesir");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Łódź"), "lodz");
        assert_eq!(fold("Đorđević"), "dordevic");
        assert_eq!(fold("Œuvre"), "oeuvre");
        assert_eq!(fold("Þór"), "thor");
        assert_eq!(fold("İstanbul"), "istanbul");
    }

    #[test]
    fn folds_compatibility_forms() {
        assert_eq!(fold("ﬁle"), "file");
        assert_eq!(fold("ＡＢＣ"), "abc");
        // A no-break space is whitespace and collapses like any other.
        assert_eq!(fold("a\u{a0}\u{a0}b"), "a b");
    }

    #[test]
    fn folds_empty_and_blank() {
        assert_eq!(fold(""), "");
        assert_eq!(fold("   \t "), "");
    }

    #[test]
    fn folding_is_idempotent() {
        for s in ["José  Núñez", "Ørsted", "Straße", "  a  b  "] {
            let once = fold(s);
            assert_eq!(fold(&once), once);
        }
    }

    #[test]
    fn non_latin_scripts_survive() {
        assert_eq!(fold("Ελένη"), "ελενη");
        // Arabic: harakat and the hamza on alef are combining marks, so
        // أمل, إمل and امل all fold to the bare alef, which is how Arabic
        // name search is commonly normalised.
        assert_eq!(fold("أمل"), "امل");
        assert_eq!(fold("إمل"), fold("امل"));
        assert_eq!(fold("مُحَمَّد"), "محمد");
    }

    #[test]
    fn allows_newline_carriage_return_and_tab() {
        assert!(!has_forbidden_control_chars("line one\r\nline two\tcol"));
        assert!(!has_forbidden_control_chars(""));
        assert!(!has_forbidden_control_chars("José Núñez — 5 mg"));
    }

    #[test]
    fn rejects_other_c0_del_and_c1() {
        assert!(has_forbidden_control_chars("a\u{0}b"));
        assert!(has_forbidden_control_chars("\u{1b}[31mred"));
        assert!(has_forbidden_control_chars("bell\u{7}"));
        assert!(has_forbidden_control_chars("\u{1f}"));
        assert!(has_forbidden_control_chars("del\u{7f}"));
        assert!(has_forbidden_control_chars("\u{80}"));
        assert!(has_forbidden_control_chars("csi\u{9b}"));
        assert!(has_forbidden_control_chars("\u{9f}"));
        assert!(!has_forbidden_control_chars("\u{a0}"));
    }

    #[test]
    fn every_control_code_point_is_classified() {
        for cp in 0u32..=0xa0 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let expected = matches!(cp, 0..=0x1f | 0x7f..=0x9f) && !matches!(c, '\n' | '\r' | '\t');
            assert_eq!(is_forbidden_control(c), expected, "U+{cp:04X}");
        }
    }
}
