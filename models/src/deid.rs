//! Guards against direct identifiers where only pseudonymous keys belong. A key must be a plain
//! token (letters, digits, `_ - . :`, no spaces), so names, e-mail addresses and spaced postcodes
//! are refused by shape; NHS numbers (10 digits passing the modulus-11 check), unspaced full
//! postcodes and full dates are refused explicitly.

/// Checks a pseudonymous patient key; the error says why, without echoing the key.
pub fn check_patient_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("patient key is empty");
    }
    if key.len() > 128 {
        return Err("patient key is longer than 128 characters");
    }
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c)) {
        return Err("patient key must be a pseudonymous token (letters, digits, `_ - . :`), not a name or address");
    }
    if is_nhs_number(key) {
        return Err("patient key looks like an NHS number; send a pseudonymous key");
    }
    if is_full_postcode(key) {
        return Err("patient key looks like a full postcode; send a pseudonymous key");
    }
    if is_full_date(key) {
        return Err("patient key looks like a full date (of birth?); send a pseudonymous key");
    }
    Ok(())
}

/// The ten digits of a value shaped like an NHS number, however it is dressed: separated
/// (`943 476 5919`, `943.476.5919`), prefixed (`NHS9434765919`, `nhs:9434765919`) or written as
/// a float (`9434765919.0`, `9.434765919E9`, what a table tool writes for a column with a gap).
/// Only digits and separators may follow the prefix, so a hex pseudonym is never read as one.
pub fn ten_digits(s: &str) -> Option<[u32; 10]> {
    // An alphabetic prefix (`NHS`, `nhs:`) and its separator.
    let body = s.trim().trim_start_matches(|c: char| c.is_ascii_alphabetic()).trim_start_matches(SEPARATORS);
    let digits: String = match body.parse::<f64>() {
        // A float holding a ten-digit integer: its digits, whatever the notation.
        Ok(x) if body.contains(['.', 'e', 'E']) && x.fract() == 0.0 && (1e9..1e10).contains(&x) => format!("{x:.0}"),
        _ => {
            if !body.chars().all(|c| c.is_ascii_digit() || SEPARATORS.contains(&c)) {
                return None;
            }
            body.chars().filter(char::is_ascii_digit).collect()
        }
    };
    let mut out = [0u32; 10];
    if digits.len() != 10 {
        return None;
    }
    for (o, c) in out.iter_mut().zip(digits.chars()) {
        *o = c.to_digit(10)?;
    }
    Some(out)
}

/// Characters that separate the groups of an identifier's digits or letters.
const SEPARATORS: &[char] = &[' ', '-', '.', ':', '_', '/', '#'];

/// A value shaped like an NHS number ([`ten_digits`]) whose check digit passes the NHS
/// modulus-11 algorithm.
pub fn is_nhs_number(s: &str) -> bool {
    let Some(digits) = ten_digits(s) else { return false };
    let sum: u32 = digits[..9].iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
    let check = 11 - sum % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == digits[9]
}

/// A full UK postcode (outward and inward code), with or without a space, dash, dot or
/// underscore between them, in either case.
pub fn is_full_postcode(s: &str) -> bool {
    let s: Vec<char> = s.trim().chars().filter(|c| !SEPARATORS.contains(c)).map(|c| c.to_ascii_uppercase()).collect();
    if !(5..=7).contains(&s.len()) {
        return false;
    }
    let (outward, inward) = s.split_at(s.len() - 3);
    let inward_ok = inward[0].is_ascii_digit() && inward[1].is_ascii_alphabetic() && inward[2].is_ascii_alphabetic();
    let shape: String = outward
        .iter()
        .map(|c| {
            if c.is_ascii_digit() {
                '9'
            } else if c.is_ascii_alphabetic() {
                'A'
            } else {
                '?'
            }
        })
        .collect();
    inward_ok && matches!(shape.as_str(), "A9" | "A99" | "AA9" | "AA99" | "A9A" | "AA9A")
}

/// A full date: `YYYY-MM-DD`, `YYYYMMDD`, `DD-MM-YYYY`, `DD/MM/YYYY` or `DD.MM.YYYY`, alone or
/// followed by a time (`1950-03-12T00:00:00`, `12/03/1950 00:00`), with a plausible month and day.
pub fn is_full_date(s: &str) -> bool {
    let s = s.trim();
    let date = s.split(['T', ' ']).next().unwrap_or_default();
    let time = &s[date.len()..];
    let time_ok = time.is_empty() || time[1..].chars().all(|c| c.is_ascii_digit() || ":.+-Z".contains(c));
    let d: String = date.chars().filter(|c| c.is_ascii_digit()).collect();
    let sep_ok = date.chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | '/'));
    if d.len() != 8 || !sep_ok || !time_ok {
        return false;
    }
    let n = |r: std::ops::Range<usize>| d[r].parse::<u32>().unwrap_or(0);
    let ymd = (1900..=2100).contains(&n(0..4)) && (1..=12).contains(&n(4..6)) && (1..=31).contains(&n(6..8));
    let dmy = (1..=31).contains(&n(0..2)) && (1..=12).contains(&n(2..4)) && (1900..=2100).contains(&n(4..8));
    ymd || dmy
}

/// HMAC-SHA256 (RFC 2104): a keyed hash that cannot be reversed, nor recomputed without the key.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The trust's secret key for pseudonyms: an identifier from the EHR (a FHIR `Patient.id`)
/// becomes a key that cannot be traced back, nor recomputed, without it, while the same patient
/// always gets the same pseudonym. Never printed, not even in `Debug`.
pub struct PseudonymKey(Vec<u8>);

/// Why a pseudonym key was refused (the key itself is never shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a pseudonym key needs at least {} bytes; this one has {bytes}", PseudonymKey::MIN_BYTES)]
    TooShort { bytes: usize },
    #[error("pseudonym key {path}: {reason}")]
    File { path: String, reason: String },
}

impl PseudonymKey {
    /// The shortest key accepted: 256 bits.
    pub const MIN_BYTES: usize = 32;

    pub fn new(key: Vec<u8>) -> Result<Self, KeyError> {
        if key.len() < Self::MIN_BYTES {
            return Err(KeyError::TooShort { bytes: key.len() });
        }
        Ok(Self(key))
    }

    /// The key in a file (its bytes, a trailing newline dropped).
    pub fn from_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let in_file = |reason: String| KeyError::File { path: path.display().to_string(), reason };
        let mut key = std::fs::read(path).map_err(|e| in_file(e.to_string()))?;
        while key.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            key.pop();
        }
        Self::new(key).map_err(|e| in_file(e.to_string()))
    }

    /// The pseudonym of `id` in `namespace` (e.g. `fhir`): the namespace, a dash and 128 bits of
    /// HMAC-SHA256 in hex. It passes [`check_patient_key`].
    pub fn pseudonym(&self, namespace: &str, id: &str) -> String {
        let mut message = Vec::with_capacity(namespace.len() + 1 + id.len());
        message.extend_from_slice(namespace.as_bytes());
        message.push(0);
        message.extend_from_slice(id.as_bytes());
        format!("{namespace}-{}", hex::encode(&hmac_sha256(&self.0, &message)[..16]))
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

/// An e-mail address.
pub fn is_email(s: &str) -> bool {
    let Some((user, domain)) = s.trim().split_once('@') else { return false };
    !user.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.contains(char::is_whitespace)
}

/// A UK telephone number: `+44` or `0` then 9-10 digits (spaces, dashes, brackets allowed).
pub fn is_uk_phone(s: &str) -> bool {
    let t = s.trim();
    if !t.chars().all(|c| c.is_ascii_digit() || " -()+".contains(c)) {
        return false;
    }
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix("44").filter(|_| t.starts_with('+')) {
        Some(rest) => (9..=10).contains(&rest.len()),
        None => !t.starts_with('+') && digits.starts_with('0') && (10..=11).contains(&digits.len()),
    }
}

/// Common forenames of people in England and Wales (ONS): a text value whose first word is one
/// of these and which has a second capitalised word looks like a person's name.
const FORENAMES: &[&str] = &[
    "john",
    "david",
    "michael",
    "paul",
    "andrew",
    "peter",
    "james",
    "robert",
    "mark",
    "richard",
    "stephen",
    "christopher",
    "ian",
    "william",
    "thomas",
    "daniel",
    "george",
    "anthony",
    "alan",
    "brian",
    "kevin",
    "gary",
    "simon",
    "matthew",
    "jack",
    "harry",
    "oliver",
    "charlie",
    "joshua",
    "mohammed",
    "muhammad",
    "ali",
    "susan",
    "margaret",
    "sarah",
    "patricia",
    "elizabeth",
    "mary",
    "karen",
    "julie",
    "helen",
    "jane",
    "linda",
    "emma",
    "claire",
    "nicola",
    "lisa",
    "jennifer",
    "catherine",
    "rachel",
    "amanda",
    "joanne",
    "michelle",
    "laura",
    "louise",
    "jessica",
    "sophie",
    "emily",
    "olivia",
    "amelia",
    "lucy",
    "hannah",
    "chloe",
    "charlotte",
    "anne",
    "ann",
    "barbara",
    "christine",
    "dorothy",
    "joan",
    "jean",
    "pauline",
    "janet",
    "valerie",
    "sandra",
    "fatima",
    "aisha",
    "priya",
    "raj",
    "sanjay",
    "wei",
    "ahmed",
    "omar",
];

/// A person's name: a common forename followed by at least one more capitalised word, or
/// "Surname, Forename" as registers write it.
pub fn is_person_name(s: &str) -> bool {
    if let Some((surname, forenames)) = s.split_once(',') {
        let surname = surname.trim();
        return !forenames.contains(',')
            && surname.chars().next().is_some_and(char::is_uppercase)
            && surname.chars().all(|c| c.is_alphabetic() || "'- ".contains(c))
            && is_person_name(&format!("{} {surname}", forenames.trim()));
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    words.len() >= 2
        && words.len() <= 4
        && FORENAMES.contains(&words[0].to_lowercase().as_str())
        && words[1..].iter().all(|w| {
            w.chars().next().is_some_and(char::is_uppercase) && w.chars().all(|c| c.is_alphabetic() || "'-".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_identifiers_and_accepts_pseudonyms() {
        // 943 476 5919 is the NHS's published example of a valid number.
        assert!(is_nhs_number("9434765919"));
        assert!(is_nhs_number("943-476-5919"));
        assert!(!is_nhs_number("9434765918"));
        assert!(check_patient_key("9434765919").is_err());
        assert!(check_patient_key("SW1A1AA").is_err());
        assert!(check_patient_key("M11AE").is_err());
        assert!(check_patient_key("John Smith").is_err());
        assert!(check_patient_key("jo@example.org").is_err());
        assert!(check_patient_key("1950-03-12").is_err());
        assert!(check_patient_key("").is_err());
        for ok in ["p-000123", "a3f9c2e1b7d04f5e", "site12:4471", "9434765918", "p9434765919x", "1234567890123"] {
            assert!(check_patient_key(ok).is_ok(), "{ok}");
        }
        // Identifiers in disguise: prefixed, separated, written as floats; postcodes separated.
        for disguised in [
            "NHS9434765919",
            "nhs:9434765919",
            "943.476.5919",
            "9434765919.0",
            "9.434765919E9",
            "SW1A-1AA",
            "sw1a.1aa",
            "12/03/1950",
        ] {
            assert!(check_patient_key(disguised).is_err(), "{disguised}");
        }
        // Every check digit the modulus-11 rule accepts, and none it refuses, by brute force over
        // the published example's first nine digits.
        for last in 0..10 {
            let n = format!("943476591{last}");
            assert_eq!(is_nhs_number(&n), last == 9, "{n}");
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_pass_the_key_check() {
        assert!(PseudonymKey::new(vec![7; 31]).is_err());
        let (a, b) = (PseudonymKey::new(vec![7; 32]).unwrap(), PseudonymKey::new(vec![8; 32]).unwrap());
        let p = a.pseudonym("fhir", "9434765919");
        assert_eq!(p, a.pseudonym("fhir", "9434765919"));
        assert_ne!(p, b.pseudonym("fhir", "9434765919"));
        assert_ne!(p, a.pseudonym("other", "9434765919"));
        assert!(p.starts_with("fhir-") && p.len() == 37 && !p.contains("9434765919"));
        assert!(check_patient_key(&p).is_ok());
        assert_eq!(format!("{a:?}"), "PseudonymKey(..)");
    }

    #[test]
    fn recognises_contact_details_and_names() {
        assert!(is_email("a.patient@nhs.net") && !is_email("not an email") && !is_email("x@y"));
        assert!(is_uk_phone("020 7946 0958") && is_uk_phone("+44 7700 900123") && is_uk_phone("07700900123"));
        assert!(!is_uk_phone("12.5") && !is_uk_phone("2029") && !is_uk_phone("9434765919"));
        assert!(is_person_name("Margaret Thatcher") && is_person_name("john Smith-Jones"));
        assert!(is_person_name("Thatcher, Margaret") && is_person_name("Smith, John Paul"));
        assert!(!is_person_name("Cancer, lung") && !is_person_name("Smith, Colon"));
        assert!(is_full_date("12/03/1950") && is_full_date("1950-03-12T00:00:00") && is_full_date("12.03.1950 00:00"));
        assert!(!is_full_date("1950-03") && !is_full_date("12/13/1950 noon"));
        assert!(
            !is_person_name("Colon Cancer")
                && !is_person_name("Lung Cancer")
                && !is_person_name("ARF/MOSF w/Sepsis")
                && !is_person_name("John")
        );
    }
}
