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

/// Ten digits (spaces or dashes allowed) whose check digit passes the NHS modulus-11 algorithm.
pub fn is_nhs_number(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter(|c| !matches!(c, ' ' | '-')).map(|c| c.to_digit(10)).collect::<Option<_>>().unwrap_or_default();
    if digits.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9].iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
    let check = 11 - sum % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == digits[9]
}

/// A full UK postcode (outward and inward code), with or without the space.
pub fn is_full_postcode(s: &str) -> bool {
    let s: Vec<char> = s.chars().filter(|c| *c != ' ').map(|c| c.to_ascii_uppercase()).collect();
    if !(5..=7).contains(&s.len()) {
        return false;
    }
    let (outward, inward) = s.split_at(s.len() - 3);
    let inward_ok = inward[0].is_ascii_digit() && inward[1].is_ascii_alphabetic() && inward[2].is_ascii_alphabetic();
    let shape: String = outward.iter().map(|c| if c.is_ascii_digit() { '9' } else if c.is_ascii_alphabetic() { 'A' } else { '?' }).collect();
    inward_ok && matches!(shape.as_str(), "A9" | "A99" | "AA9" | "AA99" | "A9A" | "AA9A")
}

/// `YYYY-MM-DD`, `YYYYMMDD` or `DD-MM-YYYY` with a plausible month and day.
pub fn is_full_date(s: &str) -> bool {
    let d: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    let sep_ok = s.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '.');
    if d.len() != 8 || !sep_ok {
        return false;
    }
    let n = |r: std::ops::Range<usize>| d[r].parse::<u32>().unwrap_or(0);
    let ymd = (1900..=2100).contains(&n(0..4)) && (1..=12).contains(&n(4..6)) && (1..=31).contains(&n(6..8));
    let dmy = (1..=31).contains(&n(0..2)) && (1..=12).contains(&n(2..4)) && (1900..=2100).contains(&n(4..8));
    ymd || dmy
}

/// An e-mail address.
pub fn is_email(s: &str) -> bool {
    let Some((user, domain)) = s.trim().split_once('@') else { return false };
    !user.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !s.contains(char::is_whitespace)
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
    "john", "david", "michael", "paul", "andrew", "peter", "james", "robert", "mark", "richard", "stephen", "christopher",
    "ian", "william", "thomas", "daniel", "george", "anthony", "alan", "brian", "kevin", "gary", "simon", "matthew", "jack",
    "harry", "oliver", "charlie", "joshua", "mohammed", "muhammad", "ali", "susan", "margaret", "sarah", "patricia",
    "elizabeth", "mary", "karen", "julie", "helen", "jane", "linda", "emma", "claire", "nicola", "lisa", "jennifer",
    "catherine", "rachel", "amanda", "joanne", "michelle", "laura", "louise", "jessica", "sophie", "emily", "olivia",
    "amelia", "lucy", "hannah", "chloe", "charlotte", "anne", "ann", "barbara", "christine", "dorothy", "joan", "jean",
    "pauline", "janet", "valerie", "sandra", "fatima", "aisha", "priya", "raj", "sanjay", "wei", "ahmed", "omar",
];

/// A person's name: a common forename followed by at least one more capitalised word.
pub fn is_person_name(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    words.len() >= 2
        && words.len() <= 4
        && FORENAMES.contains(&words[0].to_lowercase().as_str())
        && words[1..].iter().all(|w| w.chars().next().is_some_and(char::is_uppercase) && w.chars().all(|c| c.is_alphabetic() || "'-".contains(c)))
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
        for ok in ["p-000123", "a3f9c2e1b7d04f5e", "site12:4471", "9434765918"] {
            assert!(check_patient_key(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn recognises_contact_details_and_names() {
        assert!(is_email("a.patient@nhs.net") && !is_email("not an email") && !is_email("x@y"));
        assert!(is_uk_phone("020 7946 0958") && is_uk_phone("+44 7700 900123") && is_uk_phone("07700900123"));
        assert!(!is_uk_phone("12.5") && !is_uk_phone("2029") && !is_uk_phone("9434765919"));
        assert!(is_person_name("Margaret Thatcher") && is_person_name("john Smith-Jones"));
        assert!(!is_person_name("Colon Cancer") && !is_person_name("Lung Cancer") && !is_person_name("ARF/MOSF w/Sepsis") && !is_person_name("John"));
    }
}
