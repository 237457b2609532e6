//! HL7 v2 (2.3 – 2.5.1) lab results in: a hand-written ER7 parser for
//! ORU^R01 (MSH, PID, PV1, ORC, OBR, OBX, NTE), the interpretation of its
//! results, and ACK messages. Pure, and total: any input — truncated, binary,
//! hostile — gives a value or an error, never a panic (tested by a loop over
//! mutated messages).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::labs::LabFlag;

/// The versions accepted (MSH-12).
pub const VERSIONS: [&str; 5] = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"];

/// The largest message handled (a lab report is a few kilobytes).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// The separator characters of a message (MSH-1 and MSH-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

/// HL7 table 0357 message error condition codes used in ERR-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    TableValueNotFound,
    UnsupportedMessageType,
    UnsupportedEvent,
    UnsupportedVersion,
    UnknownKey,
    ApplicationError,
}

impl ErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "100",
            ErrorCode::RequiredFieldMissing => "101",
            ErrorCode::DataType => "102",
            ErrorCode::TableValueNotFound => "103",
            ErrorCode::UnsupportedMessageType => "200",
            ErrorCode::UnsupportedEvent => "201",
            ErrorCode::UnsupportedVersion => "203",
            ErrorCode::UnknownKey => "204",
            ErrorCode::ApplicationError => "207",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEvent => "Unsupported event code",
            ErrorCode::UnsupportedVersion => "Unsupported version id",
            ErrorCode::UnknownKey => "Unknown key identifier",
            ErrorCode::ApplicationError => "Application internal error",
        }
    }
}

/// One problem found in a message: where (segment name and its 1-based
/// position, field number) and why. The text never quotes the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub segment: Option<(String, usize)>,
    pub field: Option<usize>,
    pub code: ErrorCode,
    pub message: String,
}

impl Issue {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Issue {
        Issue {
            segment: None,
            field: None,
            code,
            message: message.into(),
        }
    }

    pub fn at(mut self, segment: &str, position: usize, field: usize) -> Issue {
        self.segment = Some((segment.to_string(), position));
        self.field = Some(field);
        self
    }
}

/// One segment: its name and raw fields (`fields[0]` is the name; for MSH
/// `fields[1]` is MSH-1, the field separator, so numbering is HL7's).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    /// 1-based position in the message.
    pub position: usize,
    fields: Vec<String>,
}

impl Segment {
    /// Field `n` (HL7 numbering), raw; "" when absent.
    pub fn raw(&self, n: usize) -> &str {
        self.fields.get(n).map(String::as_str).unwrap_or("")
    }
}

/// A parsed message: delimiters and segments, not yet interpreted.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub delimiters: Delimiters,
    pub segments: Vec<Segment>,
}

/// Remove MLLP framing (`0x0B … 0x1C 0x0D`) if present.
pub fn unframe(raw: &str) -> &str {
    let s = raw.trim_start_matches('\u{0b}');
    let s = s.trim_end_matches(['\r', '\n']);
    s.trim_end_matches('\u{1c}')
}

/// Split a file or stream holding several messages (each starting with an
/// `MSH` segment, optionally MLLP-framed) into messages.
pub fn split_batch(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.split(['\r', '\n', '\u{1c}']) {
        let line = line.trim_start_matches('\u{0b}');
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("MSH") || out.is_empty() {
            out.push(String::new());
        }
        if let Some(m) = out.last_mut() {
            m.push_str(line);
            m.push('\r');
        }
    }
    out
}

fn parse_delimiters(msh: &str) -> Result<Delimiters, Issue> {
    let bad = |why: &str| {
        Issue::new(
            ErrorCode::DataType,
            format!("MSH-1/MSH-2 encoding characters are not valid: {why}"),
        )
        .at("MSH", 1, 2)
    };
    let mut chars = msh.chars().skip(3);
    let field = chars
        .next()
        .ok_or_else(|| bad("the segment ends after MSH"))?;
    let enc: Vec<char> = chars.take_while(|c| *c != field).collect();
    if !(4..=5).contains(&enc.len()) {
        return Err(bad("MSH-2 must hold 4 characters, such as ^~\\&"));
    }
    let mut all = vec![field];
    all.extend(&enc[..4]);
    for (i, c) in all.iter().enumerate() {
        if c.is_alphanumeric() || c.is_whitespace() || c.is_control() {
            return Err(bad(
                "a separator must be a visible non-alphanumeric character",
            ));
        }
        if all[..i].contains(c) {
            return Err(bad("the separators must differ from each other"));
        }
    }
    Ok(Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: enc[2],
        subcomponent: enc[3],
    })
}

/// Parse ER7 text into segments. Segments end with CR (LF and CRLF are
/// accepted too); names are three upper-case letters or digits.
pub fn parse(raw: &str) -> Result<Message, Issue> {
    if raw.len() > MAX_MESSAGE {
        return Err(Issue::new(
            ErrorCode::ApplicationError,
            "the message is larger than 1 MiB",
        ));
    }
    let text = unframe(raw);
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
    {
        return Err(Issue::new(
            ErrorCode::DataType,
            "the message contains control characters (such as NUL) that HL7 text may not hold",
        ));
    }
    let lines: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .collect();
    let first = lines.first().copied().unwrap_or("");
    if !first.starts_with("MSH") {
        return Err(Issue::new(
            ErrorCode::SegmentSequence,
            "the message must begin with an MSH segment",
        ));
    }
    let d = parse_delimiters(first)?;
    let mut segments = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let position = i + 1;
        let mut parts: Vec<String> = line.split(d.field).map(str::to_string).collect();
        let name = parts.first().cloned().unwrap_or_default();
        let valid_name = name.len() == 3
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !valid_name {
            return Err(Issue::new(
                ErrorCode::SegmentSequence,
                format!("segment {position} does not start with a segment name"),
            ));
        }
        if name == "MSH" {
            if i > 0 {
                return Err(Issue::new(
                    ErrorCode::SegmentSequence,
                    "a second MSH segment: send one message at a time",
                ));
            }
            // MSH-1 is the field separator itself.
            parts.insert(1, d.field.to_string());
        }
        segments.push(Segment {
            name,
            position,
            fields: parts,
        });
    }
    Ok(Message {
        delimiters: d,
        segments,
    })
}

impl Message {
    pub fn msh(&self) -> Option<&Segment> {
        self.segments.first()
    }

    /// The repetitions of a raw field.
    pub fn repetitions<'a>(&self, raw: &'a str) -> Vec<&'a str> {
        raw.split(self.delimiters.repetition).collect()
    }

    /// Component `n` (1-based) of a raw field value (its first repetition), decoded.
    pub fn component(&self, raw: &str, n: usize) -> String {
        let first = raw.split(self.delimiters.repetition).next().unwrap_or("");
        let c = first
            .split(self.delimiters.component)
            .nth(n.saturating_sub(1))
            .unwrap_or("");
        let sub = c.split(self.delimiters.subcomponent).next().unwrap_or("");
        self.decode(sub)
    }

    /// A whole field as text: its first repetition, first component, decoded.
    pub fn text(&self, raw: &str) -> String {
        self.component(raw, 1)
    }

    /// Resolve escape sequences: \F\ \S\ \T\ \R\ \E\, \Xhh..\ and \.br\;
    /// other sequences (formatting, character sets) are dropped.
    pub fn decode(&self, s: &str) -> String {
        let d = &self.delimiters;
        let e = d.escape;
        if !s.contains(e) {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find(e) {
            out.push_str(rest.get(..start).unwrap_or_default());
            let after = rest.get(start + e.len_utf8()..).unwrap_or_default();
            match after.find(e) {
                None => {
                    // An unterminated escape is kept as text.
                    out.push_str(rest.get(start..).unwrap_or_default());
                    return out;
                }
                Some(end) => {
                    let seq = after.get(..end).unwrap_or_default();
                    match seq {
                        "F" => out.push(d.field),
                        "S" => out.push(d.component),
                        "T" => out.push(d.subcomponent),
                        "R" => out.push(d.repetition),
                        "E" => out.push(e),
                        ".br" => out.push('\n'),
                        _ if seq.starts_with('X') => {
                            let hex = seq.get(1..).unwrap_or_default();
                            let bytes: Vec<u8> = (0..hex.len() / 2)
                                .filter_map(|i| hex.get(2 * i..2 * i + 2))
                                .filter_map(|h| u8::from_str_radix(h, 16).ok())
                                .collect();
                            out.push_str(&String::from_utf8_lossy(&bytes));
                        }
                        _ => {}
                    }
                    rest = after.get(end + e.len_utf8()..).unwrap_or_default();
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// A coded element (CE/CWE): identifier, text, coding system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coded {
    pub code: String,
    pub text: String,
    pub system: String,
}

/// One OBX, interpreted.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The OBX's position in the message (for ERR locations).
    pub position: usize,
    pub value_type: String,
    pub code: Coded,
    pub value: String,
    pub units: Coded,
    pub range: String,
    pub flags: Vec<String>,
    pub status: String,
    pub observed_at: Option<DateTime<Utc>>,
    pub notes: Vec<String>,
}

/// One OBR and its OBXs.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub position: usize,
    pub placer: String,
    pub filler: String,
    pub service: Coded,
    pub observed_at: Option<DateTime<Utc>>,
    pub results: Vec<Observation>,
    pub notes: Vec<String>,
}

/// The patient as the sender identifies them (PID).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientId {
    pub position: usize,
    /// PID-3 repetitions: (id, identifier type code such as MR).
    pub identifiers: Vec<(String, String)>,
    pub family: String,
    pub given: String,
    /// PID-7, when it is a valid date.
    pub birth_date: Option<NaiveDate>,
    pub birth_date_raw: String,
}

impl PatientId {
    /// The medical record number: the identifier typed MR, else the first.
    pub fn mrn(&self) -> Option<&str> {
        self.identifiers
            .iter()
            .find(|(_, t)| t.eq_ignore_ascii_case("MR"))
            .or_else(|| self.identifiers.first())
            .map(|(id, _)| id.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// The header fields an ACK echoes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub message_type: String,
    pub trigger: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
}

/// A whole ORU^R01 message, interpreted.
#[derive(Debug, Clone, PartialEq)]
pub struct OruR01 {
    pub header: Header,
    pub patient: PatientId,
    pub orders: Vec<Order>,
}

/// What the header says, read as far as it can be (for an ACK even when the
/// rest of the message is rejected).
pub fn header(m: &Message) -> Header {
    let Some(msh) = m.msh() else {
        return Header::default();
    };
    Header {
        sending_application: m.text(msh.raw(3)),
        sending_facility: m.text(msh.raw(4)),
        receiving_application: m.text(msh.raw(5)),
        receiving_facility: m.text(msh.raw(6)),
        message_type: m.component(msh.raw(9), 1),
        trigger: m.component(msh.raw(9), 2),
        control_id: m.text(msh.raw(10)),
        processing_id: m.text(msh.raw(11)),
        version: m.text(msh.raw(12)),
    }
}

/// An HL7 date/time (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]`). Without an
/// offset the time is taken as UTC.
pub fn timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    let (body, zone) = match raw.find(['+', '-']) {
        Some(i) => (raw.get(..i)?, raw.get(i..)),
        None => (raw, None),
    };
    let (digits, frac) = match body.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (body, None),
    };
    if digits.len() < 8 || digits.len() > 14 || digits.len() % 2 != 0 {
        return None;
    }
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{digits:0<14}");
    let mut t = NaiveDateTime::parse_from_str(&padded, "%Y%m%d%H%M%S").ok()?;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 4 || !f.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let micros: i64 = format!("{f:0<6}").parse().ok()?;
        t += chrono::Duration::microseconds(micros);
    }
    let offset = match zone {
        None => FixedOffset::east_opt(0)?,
        Some(z) => {
            if z.len() != 5
                || !z
                    .get(1..)
                    .unwrap_or_default()
                    .chars()
                    .all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let h: i32 = z.get(1..3).unwrap_or_default().parse().ok()?;
            let mi: i32 = z.get(3..5).unwrap_or_default().parse().ok()?;
            let secs = (h * 3600 + mi * 60) * if z.starts_with('-') { -1 } else { 1 };
            FixedOffset::east_opt(secs)?
        }
    };
    offset
        .from_local_datetime(&t)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

fn coded(m: &Message, raw: &str) -> Coded {
    Coded {
        code: m.component(raw, 1).trim().to_string(),
        text: m.component(raw, 2).trim().to_string(),
        system: m.component(raw, 3).trim().to_string(),
    }
}

/// Interpret a parsed message as ORU^R01: header checks (type, version,
/// control id), one patient, orders and their results in order.
pub fn oru_r01(m: &Message) -> Result<OruR01, Issue> {
    let h = header(m);
    if h.message_type != "ORU" {
        return Err(Issue::new(
            ErrorCode::UnsupportedMessageType,
            "only ORU^R01 lab result messages are accepted",
        )
        .at("MSH", 1, 9));
    }
    if h.trigger != "R01" {
        return Err(Issue::new(
            ErrorCode::UnsupportedEvent,
            "only the R01 trigger event is accepted",
        )
        .at("MSH", 1, 9));
    }
    if h.control_id.trim().is_empty() {
        return Err(Issue::new(
            ErrorCode::RequiredFieldMissing,
            "MSH-10 message control id is required",
        )
        .at("MSH", 1, 10));
    }
    if h.control_id.chars().count() > 50 {
        return Err(Issue::new(
            ErrorCode::DataType,
            "MSH-10 message control id is longer than 50 characters",
        )
        .at("MSH", 1, 10));
    }
    if !VERSIONS.contains(&h.version.as_str()) {
        return Err(Issue::new(
            ErrorCode::UnsupportedVersion,
            "MSH-12 version must be 2.3, 2.3.1, 2.4, 2.5 or 2.5.1",
        )
        .at("MSH", 1, 12));
    }
    let mut patient: Option<PatientId> = None;
    let mut orders: Vec<Order> = Vec::new();
    // Where the next NTE belongs.
    #[derive(Clone, Copy)]
    enum Last {
        Patient,
        Order,
        Result,
    }
    let mut last = Last::Patient;
    for s in m.segments.iter().skip(1) {
        let seq = |why: &str| {
            Issue::new(ErrorCode::SegmentSequence, why.to_string()).at(&s.name, s.position, 0)
        };
        match s.name.as_str() {
            "PID" => {
                if patient.is_some() {
                    return Err(seq("one patient per message: a second PID segment"));
                }
                let identifiers = m
                    .repetitions(s.raw(3))
                    .into_iter()
                    .map(|r| {
                        (
                            m.component(r, 1).trim().to_string(),
                            m.component(r, 5).trim().to_string(),
                        )
                    })
                    .filter(|(id, _)| !id.is_empty())
                    .collect();
                let birth_raw = m.text(s.raw(7)).trim().to_string();
                let birth_date = birth_raw
                    .get(..8)
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok());
                patient = Some(PatientId {
                    position: s.position,
                    identifiers,
                    family: m.component(s.raw(5), 1).trim().to_string(),
                    given: m.component(s.raw(5), 2).trim().to_string(),
                    birth_date,
                    birth_date_raw: birth_raw,
                });
                last = Last::Patient;
            }
            "OBR" => {
                if patient.is_none() {
                    return Err(seq("OBR before PID"));
                }
                orders.push(Order {
                    position: s.position,
                    placer: m.text(s.raw(2)),
                    filler: m.text(s.raw(3)),
                    service: coded(m, s.raw(4)),
                    observed_at: timestamp(&m.text(s.raw(7))),
                    results: Vec::new(),
                    notes: Vec::new(),
                });
                last = Last::Order;
            }
            "OBX" => {
                let Some(order) = orders.last_mut() else {
                    return Err(seq("OBX before any OBR"));
                };
                let flags = m
                    .repetitions(s.raw(8))
                    .into_iter()
                    .map(|r| m.text(r).trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect();
                order.results.push(Observation {
                    position: s.position,
                    value_type: m.text(s.raw(2)).trim().to_string(),
                    code: coded(m, s.raw(3)),
                    value: s.raw(5).to_string(),
                    units: coded(m, s.raw(6)),
                    range: m.text(s.raw(7)).trim().to_string(),
                    flags,
                    status: m.text(s.raw(11)).trim().to_string(),
                    observed_at: timestamp(&m.text(s.raw(14))),
                    notes: Vec::new(),
                });
                last = Last::Result;
            }
            "NTE" => {
                let text = m
                    .repetitions(s.raw(3))
                    .into_iter()
                    .map(|r| m.text(r))
                    .collect::<Vec<_>>()
                    .join("\n");
                match last {
                    Last::Patient => {}
                    Last::Order => {
                        if let Some(o) = orders.last_mut() {
                            o.notes.push(text);
                        }
                    }
                    Last::Result => {
                        if let Some(r) = orders.last_mut().and_then(|o| o.results.last_mut()) {
                            r.notes.push(text);
                        }
                    }
                }
            }
            // Visit, common order, specimen, software and Z-segments carry
            // nothing we store.
            _ => {}
        }
    }
    let patient = patient
        .ok_or_else(|| Issue::new(ErrorCode::SegmentSequence, "the message has no PID segment"))?;
    if orders.iter().all(|o| o.results.is_empty()) {
        return Err(Issue::new(
            ErrorCode::SegmentSequence,
            "the message has no OBX result",
        ));
    }
    Ok(OruR01 {
        header: h,
        patient,
        orders,
    })
}

/// A numeric result value: NM, or SN without a comparator or range
/// (`^5.2`); anything else is not an exact number.
pub fn numeric_value(m: &Message, o: &Observation) -> Option<f64> {
    let text = match o.value_type.as_str() {
        "NM" => m.text(&o.value),
        "SN" => {
            let (cmp, num, sep) = (
                m.component(&o.value, 1),
                m.component(&o.value, 2),
                m.component(&o.value, 3),
            );
            if !(cmp.is_empty() || cmp == "=") || !sep.is_empty() {
                return None;
            }
            num
        }
        _ => return None,
    };
    number(&text)
}

/// A plain decimal number (no exponent, no NaN or infinity).
fn number(s: &str) -> Option<f64> {
    let t = s.trim();
    let plain = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || "+-.".contains(c));
    t.parse::<f64>().ok().filter(|v| plain && v.is_finite())
}

/// OBX-7 as (low, high): `3.5-5.0`, `3.5 - 5.0`, `-1-1`, `<5`, `<=5`,
/// `>3`, `>=3`. `None` when the text is not such a range.
pub fn reference_range(raw: &str) -> Option<(Option<f64>, Option<f64>)> {
    let t = raw.trim();
    if t.is_empty() {
        return Some((None, None));
    }
    if let Some(rest) = t.strip_prefix("<=").or_else(|| t.strip_prefix('<')) {
        return number(rest).map(|h| (None, Some(h)));
    }
    if let Some(rest) = t.strip_prefix(">=").or_else(|| t.strip_prefix('>')) {
        return number(rest).map(|l| (Some(l), None));
    }
    // The separating hyphen is the first one after the first character.
    let idx = t
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '-')
        .map(|(i, _)| i)?;
    let (lo, hi) = (
        number(t.get(..idx).unwrap_or_default())?,
        number(t.get(idx + 1..).unwrap_or_default())?,
    );
    (lo <= hi).then_some((Some(lo), Some(hi)))
}

/// The sender's abnormal flag (OBX-8) in our vocabulary, when it maps.
pub fn sender_flag(flags: &[String]) -> Option<LabFlag> {
    flags.iter().find_map(|f| match f.as_str() {
        "N" => Some(LabFlag::Normal),
        "L" => Some(LabFlag::Low),
        "H" => Some(LabFlag::High),
        "LL" => Some(LabFlag::CriticalLow),
        "HH" => Some(LabFlag::CriticalHigh),
        _ => None,
    })
}

/// How serious a flag is, to keep the more serious of two opinions.
pub fn severity(f: LabFlag) -> u8 {
    match f {
        LabFlag::Normal => 0,
        LabFlag::Low | LabFlag::High => 1,
        LabFlag::CriticalLow | LabFlag::CriticalHigh => 2,
    }
}

/// ACK codes (MSA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Accepted.
    AA,
    /// Application error: understood, not stored.
    AE,
    /// Rejected: not understood (syntax, type, version).
    AR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
        }
    }

    pub fn parse(s: &str) -> Option<AckCode> {
        [AckCode::AA, AckCode::AE, AckCode::AR]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// Escape text for an ER7 field with the standard delimiters.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '\r' | '\n' => out.push_str("\\.br\\"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn hl7_time(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S+0000").to_string()
}

/// An ACK for a message with header `h` (as far as it could be read).
/// `issues` become ERR segments (2.5 layout; ERR-1 too for older versions).
pub fn ack(
    h: &Header,
    code: AckCode,
    text: &str,
    issues: &[Issue],
    ack_control_id: &str,
    now: DateTime<Utc>,
) -> String {
    let version = if VERSIONS.contains(&h.version.as_str()) {
        h.version.as_str()
    } else {
        "2.5.1"
    };
    let processing = if h.processing_id.is_empty() {
        "P".to_string()
    } else {
        escape(&h.processing_id)
    };
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{}||ACK^R01^ACK|{}|{}|{}\r",
        "AMAL",
        escape(if h.receiving_facility.is_empty() {
            "AMAL"
        } else {
            &h.receiving_facility
        }),
        escape(&h.sending_application),
        escape(&h.sending_facility),
        hl7_time(now),
        escape(ack_control_id),
        processing,
        version
    );
    out.push_str(&format!(
        "MSA|{}|{}|{}\r",
        code.as_str(),
        escape(&h.control_id),
        escape(text)
    ));
    let old = matches!(version, "2.3" | "2.3.1" | "2.4");
    for i in issues {
        let loc = match (&i.segment, i.field) {
            (Some((s, p)), Some(f)) if f > 0 => format!("{s}^{p}^{f}"),
            (Some((s, p)), _) => format!("{s}^{p}"),
            _ => String::new(),
        };
        let severity = if code == AckCode::AA { "W" } else { "E" };
        let err1 = if old {
            format!("{loc}^{}&{}&HL70357", i.code.code(), i.code.text())
        } else {
            String::new()
        };
        out.push_str(&format!(
            "ERR|{err1}|{loc}|{}^{}^HL70357|{severity}||||{}\r",
            i.code.code(),
            i.code.text(),
            escape(&i.message)
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "MSH|^~\\&|LAB|ACME LAB|AMAL|CLINIC|20260105083000||ORU^R01|MSG0001|P|2.5.1\r\
PID|1||1234567897^^^CLINIC^MR~998877^^^STATE^SS||Haddad^Amira^^^^^L||19800412|F\r\
PV1|1|O\r\
ORC|RE|ORD1|FIL1\r\
OBR|1|ORD1|FIL1|24323-8^Comprehensive metabolic panel^LN|||20260105070000\r\
OBX|1|NM|2345-7^Glucose^LN||250|mg/dL^^UCUM|70-99|H|||F|||20260105070000\r\
NTE|1|L|Fasting specimen\\.br\\second line\r\
OBX|2|SN|2823-3^Potassium^LN||^4.1|mmol/L|3.5-5.1|N|||F\r\
OBX|3|ST|8251-1^Service comment^LN||See note \\T\\ call \\F\\ lab||||||F\r";

    #[test]
    fn parses_a_lab_report() {
        let m = parse(SAMPLE).unwrap_or_else(|_| Message {
            delimiters: Delimiters::default(),
            segments: vec![],
        });
        let o = oru_r01(&m).ok();
        let o = o.as_ref();
        assert_eq!(o.map(|o| o.header.control_id.as_str()), Some("MSG0001"));
        assert_eq!(o.and_then(|o| o.patient.mrn()), Some("1234567897"));
        assert_eq!(o.map(|o| o.patient.family.as_str()), Some("Haddad"));
        assert_eq!(
            o.and_then(|o| o.patient.birth_date),
            NaiveDate::from_ymd_opt(1980, 4, 12)
        );
        let results = o.map(|o| o.orders[0].results.clone()).unwrap_or_default();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].code.code, "2345-7");
        assert_eq!(results[0].units.code, "mg/dL");
        assert_eq!(numeric_value(&m, &results[0]), Some(250.0));
        assert_eq!(numeric_value(&m, &results[1]), Some(4.1));
        assert_eq!(numeric_value(&m, &results[2]), None);
        assert_eq!(
            results[0].notes,
            vec!["Fasting specimen\nsecond line".to_string()]
        );
        assert_eq!(m.text(&results[2].value), "See note & call | lab");
        assert_eq!(sender_flag(&results[0].flags), Some(LabFlag::High));
    }

    #[test]
    fn other_encoding_characters_are_honoured_and_bad_ones_refused() {
        let alt = SAMPLE.replace('|', "#");
        let m = parse(&alt).ok();
        assert_eq!(
            m.as_ref().map(|m| header(m).control_id),
            Some("MSG0001".to_string())
        );
        for bad in [
            "MSH|^~|LAB",
            "MSH|^^\\&|LAB",
            "MSH|a~\\&|X",
            "MSH",
            "MSH|^~\\||X",
        ] {
            let e = parse(bad).err();
            assert_eq!(e.map(|e| e.code), Some(ErrorCode::DataType), "{bad}");
        }
        assert!(parse("PID|1").is_err());
        let nul = SAMPLE.replace("Haddad", "Had\u{0}dad");
        assert_eq!(parse(&nul).err().map(|e| e.code), Some(ErrorCode::DataType));
        assert!(parse("").is_err());
    }

    #[test]
    fn timestamps_ranges_and_escapes() {
        let t = |s: &str| timestamp(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("20260105083000"),
            Some("2026-01-05T08:30:00+00:00".into())
        );
        assert_eq!(
            t("202601050830-0500"),
            Some("2026-01-05T13:30:00+00:00".into())
        );
        assert_eq!(t("20260105"), Some("2026-01-05T00:00:00+00:00".into()));
        assert_eq!(
            t("20260105083000.12"),
            Some("2026-01-05T08:30:00.120+00:00".into())
        );
        assert_eq!(t("2026"), None);
        assert_eq!(t("20261305"), None);
        assert_eq!(t("2026010508300x"), None);
        assert_eq!(reference_range("3.5-5.0"), Some((Some(3.5), Some(5.0))));
        assert_eq!(reference_range(" 3.5 - 5.0 "), Some((Some(3.5), Some(5.0))));
        assert_eq!(reference_range("-1-1"), Some((Some(-1.0), Some(1.0))));
        assert_eq!(reference_range("<5"), Some((None, Some(5.0))));
        assert_eq!(reference_range(">=60"), Some((Some(60.0), None)));
        assert_eq!(reference_range("negative"), None);
        assert_eq!(reference_range("5-3"), None);
        assert_eq!(escape("a|b^c&d~e\\f"), "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f");
    }

    #[test]
    fn ack_carries_the_control_id_and_errors() {
        let h = Header {
            sending_application: "LAB".into(),
            sending_facility: "ACME".into(),
            control_id: "MSG|1".into(),
            version: "2.3".into(),
            ..Default::default()
        };
        let issue = Issue::new(ErrorCode::UnknownKey, "no patient has MRN").at("PID", 2, 3);
        let a = ack(&h, AckCode::AE, "not stored", &[issue], "ACK1", Utc::now());
        let lines: Vec<&str> = a.split('\r').collect();
        assert!(lines[0].starts_with("MSH|^~\\&|AMAL|"));
        assert!(lines[0].ends_with("|ACK^R01^ACK|ACK1|P|2.3"));
        assert_eq!(lines[1], "MSA|AE|MSG\\F\\1|not stored");
        assert_eq!(
            lines[2],
            "ERR|PID^2^3^204&Unknown key identifier&HL70357|PID^2^3|204^Unknown key identifier^HL70357|E||||no patient has MRN"
        );
    }

    /// A tiny deterministic generator, so the mutation loop needs no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Mutate `msg` at random: deletions, insertions of delimiter or odd
    /// characters, duplicated spans, truncations.
    fn mutate(msg: &str, rng: &mut Rng) -> String {
        let mut chars: Vec<char> = msg.chars().collect();
        let alphabet = [
            '|', '^', '~', '\\', '&', '\r', '\n', 'X', '0', '-', '.', 'é', '\u{0}', '\u{1c}',
            '\u{0b}', 'M', 'S', 'H',
        ];
        for _ in 0..1 + rng.below(6) {
            let len = chars.len();
            match rng.below(5) {
                0 if len > 0 => {
                    chars.remove(rng.below(len));
                }
                1 => {
                    let c = alphabet[rng.below(alphabet.len())];
                    chars.insert(rng.below(len + 1), c);
                }
                2 if len > 0 => {
                    let i = rng.below(len);
                    chars[i] = alphabet[rng.below(alphabet.len())];
                }
                3 if len > 0 => chars.truncate(rng.below(len)),
                _ if len > 2 => {
                    let a = rng.below(len);
                    let b = (a + rng.below(40)).min(len);
                    let span: Vec<char> = chars[a..b].to_vec();
                    let at = rng.below(len);
                    chars.splice(at..at, span);
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let m = mutate(SAMPLE, &mut rng);
            if let Ok(parsed) = parse(&m) {
                let h = header(&parsed);
                if let Ok(o) = oru_r01(&parsed) {
                    for r in o.orders.iter().flat_map(|o| &o.results) {
                        let _ = numeric_value(&parsed, r);
                        let _ = reference_range(&r.range);
                    }
                }
                let _ = ack(&h, AckCode::AR, "x", &[], "1", Utc::now());
            }
            let _ = split_batch(&m);
            let _ = timestamp(&m);
        }
    }
}
