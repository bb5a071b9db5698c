//! Built-in guardrail detectors as data: the regular expressions of each detector and the
//! checks their matches must pass. Pure: no state, no I/O, no allocation in any validator.
//!
//! The scanner compiles every pattern in bytes mode
//! (`regex_automata::util::syntax::Config::new().unicode(false).utf8(false)`) into one
//! leftmost-first multi-pattern regex per profile side. So `\b`, `\s` and `(?i)` are ASCII
//! only, `.` and classes match bytes, and a literal non-ASCII character in a pattern stands for
//! its UTF-8 bytes. Every pattern's match length is bounded (every repetition has an upper
//! bound, at most 1024 bytes per match, at least 1): a stream holds back no more than that.
//!
//! Context: on a match whose check fails the scanner tries the other patterns anchored at the
//! same start, then resumes one byte later. Patterns cannot look behind except through `\b`
//! and `\B`, and cannot look ahead, so they guard their edges with `\b` and, where a value
//! must not run on (a fifth IPv4 octet, a longer SSN run), consume the continuation so that
//! the check rejects the whole. A value preceded by a dot or dash run cannot be told apart
//! from the same value standing alone ("1.2.3.4.5" still yields "2.3.4.5").

// === Types and lookup ===

/// One regular expression of a built-in detector, with the check its matches must pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BuiltinPattern {
    /// What it finds, for docs and tests: "email", "visa", "aws_access_key", ...
    // Hits are reported per rule, so only tests and diagnostics read it.
    #[allow(dead_code)]
    pub kind: &'static str,
    /// The pattern (regex-automata syntax, bytes mode as above). Bounded length: every
    /// repetition has an upper bound; maximum match length <= 1024 bytes; minimum >= 1.
    pub regex: &'static str,
    /// Checks a match (the exact matched bytes); `None` = every match counts.
    pub validate: Option<fn(&[u8]) -> bool>,
}

/// The patterns of a built-in detector by its config name: "email", "phone", "payment_card",
/// "iban", "us_ssn", "ip_address", "secrets", "prompt_injection". Empty slice for any other
/// name.
pub(crate) fn patterns(detector: &str) -> &'static [BuiltinPattern] {
    match detector {
        "email" => EMAIL,
        "phone" => PHONE,
        "payment_card" => PAYMENT_CARD,
        "iban" => IBAN,
        "us_ssn" => US_SSN,
        "ip_address" => IP_ADDRESS,
        "secrets" => SECRETS,
        "prompt_injection" => PROMPT_INJECTION,
        _ => &[],
    }
}

// === Patterns ===

static EMAIL: &[BuiltinPattern] = &[BuiltinPattern {
    kind: "email",
    // Local part starts with a word byte so `\b` keeps it from starting mid-token; domain
    // labels never start or end with '-'; the TLD is alphabetic.
    regex: r"\b[A-Za-z0-9_][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}\b",
    validate: Some(valid_email),
}];

static PHONE: &[BuiltinPattern] = &[
    BuiltinPattern {
        kind: "phone_international",
        // +CC, an optional "(area)", then groups split by single spaces, dashes or dots:
        // +44 20 7946 0958, +1 (415) 555-0132, +81 3-1234-5678, +44 (0)20 7946 0958.
        regex: r"\B\+[1-9][0-9]{0,2}(?:[ .-]?\([0-9]{1,4}\)[ .-]?[0-9]{1,8})?(?:[ .-][0-9]{1,8}){1,6}\b",
        validate: Some(valid_phone),
    },
    BuiltinPattern {
        kind: "phone_e164",
        // +442079460958: the '+' is what tells it from an order number.
        regex: r"\B\+[1-9][0-9]{6,14}\b",
        validate: Some(valid_phone),
    },
    BuiltinPattern {
        kind: "phone_nanp",
        // 415-555-0132, 415.555.0132, 415 555 0132 (area and exchange never start with 0/1).
        regex: r"\b[2-9][0-9]{2}[-. ][2-9][0-9]{2}[-. ][0-9]{4}\b",
        validate: Some(valid_phone),
    },
    BuiltinPattern {
        kind: "phone_nanp_parens",
        // (415) 555-0132, (415)555-0132.
        regex: r"\B\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[-. ][0-9]{4}\b",
        validate: Some(valid_phone),
    },
    BuiltinPattern {
        kind: "phone_trunk",
        // National numbers with a trunk 0 in three groups, in the shapes countries use:
        // 03-1234-5678, 020 7946 0958, 045-123-4567, 0161 496 0920, 01632 960 001. Never
        // 4-4-4 (IBAN and card groups) nor 3-2-4 (an SSN).
        regex: r"\b0(?:[1-9][ -][0-9]{4}|[1-9][0-9][ -][0-9]{3,4}|[1-9][0-9]{2,3}[ -][0-9]{3})[ -][0-9]{3,4}\b",
        validate: Some(valid_phone),
    },
    BuiltinPattern {
        kind: "phone_trunk_subscriber",
        // Trunk 0 and area code, then one subscriber block: 030 90182015, 07700 900357,
        // 030/90182015. The 5+ digit block is what no IBAN or card grouping has.
        regex: r"\b0[1-9][0-9]{1,4}[ /-][0-9]{5,8}\b",
        validate: Some(valid_phone),
    },
    BuiltinPattern {
        kind: "phone_fr",
        // 01 23 45 67 89, 06.39.98.13.77.
        regex: r"\b0[1-9](?:[ .-][0-9]{2}){4}\b",
        validate: Some(valid_phone),
    },
    BuiltinPattern {
        kind: "phone_es",
        // 912 345 678: Spanish numbers start with 6, 7, 8 or 9; spaces only.
        regex: r"\b[6-9][0-9]{2} [0-9]{3} [0-9]{3}\b",
        validate: Some(valid_phone),
    },
];

// Card shapes are separate patterns, longest first, so that when a shape swallows a trailing
// CVC ("4111 1111 1111 1111 123") and fails Luhn, the scanner's retry of the other patterns at
// the same start finds the 16-digit shape. That shape in turn swallows what cannot follow a
// card (more four-digit groups, or the one- or two-digit last group of an IBAN), so the check
// rejects the whole run instead of flagging four groups of it.
static PAYMENT_CARD: &[BuiltinPattern] = &[
    BuiltinPattern {
        kind: "card_grouped_17_19",
        regex: r"\b[0-9]{4}(?:[ -][0-9]{4}){3}[ -][0-9]{1,3}\b",
        validate: Some(valid_payment_card),
    },
    BuiltinPattern {
        kind: "card_grouped_16",
        regex: r"\b[0-9]{4}(?:[ -][0-9]{4}){3,7}(?:[ -][0-9]{1,2})?\b",
        validate: Some(valid_payment_card),
    },
    BuiltinPattern {
        kind: "card_grouped_13_15",
        regex: r"\b[0-9]{4}(?:[ -][0-9]{4}){2}[ -][0-9]{1,3}\b",
        validate: Some(valid_payment_card),
    },
    BuiltinPattern {
        kind: "card_grouped_amex_diners",
        // 4-6-5 (American Express), 4-6-4 (Diners Club).
        regex: r"\b[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5}\b",
        validate: Some(valid_payment_card),
    },
    BuiltinPattern {
        kind: "card_digits",
        regex: r"\b[0-9]{13,19}\b",
        validate: Some(valid_payment_card),
    },
];

/// SWIFT IBAN registry: country code and total IBAN length. The `iban` pattern is built from
/// this table (a test checks that it still is).
#[rustfmt::skip]
pub(crate) const IBAN_LENGTHS: &[([u8; 2], u8)] = &[
    (*b"AD", 24),
    (*b"AE", 23),
    (*b"AL", 28),
    (*b"AT", 20),
    (*b"AZ", 28),
    (*b"BA", 20),
    (*b"BE", 16),
    (*b"BG", 22),
    (*b"BH", 22),
    (*b"BI", 27),
    (*b"BR", 29),
    (*b"BY", 28),
    (*b"CH", 21),
    (*b"CR", 22),
    (*b"CY", 28),
    (*b"CZ", 24),
    (*b"DE", 22),
    (*b"DJ", 27),
    (*b"DK", 18),
    (*b"DO", 28),
    (*b"EE", 20),
    (*b"EG", 29),
    (*b"ES", 24),
    (*b"FI", 18),
    (*b"FK", 18),
    (*b"FO", 18),
    (*b"FR", 27),
    (*b"GB", 22),
    (*b"GE", 22),
    (*b"GI", 23),
    (*b"GL", 18),
    (*b"GR", 27),
    (*b"GT", 28),
    (*b"HN", 28),
    (*b"HR", 21),
    (*b"HU", 28),
    (*b"IE", 22),
    (*b"IL", 23),
    (*b"IQ", 23),
    (*b"IS", 26),
    (*b"IT", 27),
    (*b"JO", 30),
    (*b"KW", 30),
    (*b"KZ", 20),
    (*b"LB", 28),
    (*b"LC", 32),
    (*b"LI", 21),
    (*b"LT", 20),
    (*b"LU", 20),
    (*b"LV", 21),
    (*b"LY", 25),
    (*b"MC", 27),
    (*b"MD", 24),
    (*b"ME", 22),
    (*b"MK", 19),
    (*b"MN", 20),
    (*b"MR", 27),
    (*b"MT", 31),
    (*b"MU", 30),
    (*b"NI", 28),
    (*b"NL", 18),
    (*b"NO", 15),
    (*b"OM", 23),
    (*b"PK", 24),
    (*b"PL", 28),
    (*b"PS", 29),
    (*b"PT", 25),
    (*b"QA", 29),
    (*b"RO", 24),
    (*b"RS", 22),
    (*b"RU", 33),
    (*b"SA", 24),
    (*b"SC", 31),
    (*b"SD", 18),
    (*b"SE", 24),
    (*b"SI", 19),
    (*b"SK", 24),
    (*b"SM", 27),
    (*b"SO", 23),
    (*b"ST", 25),
    (*b"SV", 28),
    (*b"TL", 23),
    (*b"TN", 24),
    (*b"TR", 26),
    (*b"UA", 29),
    (*b"VA", 22),
    (*b"VG", 24),
    (*b"XK", 20),
    (*b"YE", 30),
];

static IBAN: &[BuiltinPattern] = &[BuiltinPattern {
    kind: "iban",
    // One alternative per IBAN length, each with that length's countries: the match has the
    // exact length, compact or in groups of four, so a short word after the last group is
    // never swallowed into it.
    regex: concat!(
        r"\b(?:",
        r"(?i:NO)[0-9]{2}(?:[A-Za-z0-9]{11}|(?: [A-Za-z0-9]{4}){2} [A-Za-z0-9]{3})",
        r"|(?i:BE)[0-9]{2}(?:[A-Za-z0-9]{12}|(?: [A-Za-z0-9]{4}){3})",
        r"|(?i:DK|FI|FK|FO|GL|NL|SD)[0-9]{2}(?:[A-Za-z0-9]{14}|(?: [A-Za-z0-9]{4}){3} [A-Za-z0-9]{2})",
        r"|(?i:MK|SI)[0-9]{2}(?:[A-Za-z0-9]{15}|(?: [A-Za-z0-9]{4}){3} [A-Za-z0-9]{3})",
        r"|(?i:AT|BA|EE|KZ|LT|LU|MN|XK)[0-9]{2}(?:[A-Za-z0-9]{16}|(?: [A-Za-z0-9]{4}){4})",
        r"|(?i:CH|HR|LI|LV)[0-9]{2}(?:[A-Za-z0-9]{17}|(?: [A-Za-z0-9]{4}){4} [A-Za-z0-9]{1})",
        r"|(?i:BG|BH|CR|DE|GB|GE|IE|ME|RS|VA)[0-9]{2}(?:[A-Za-z0-9]{18}|(?: [A-Za-z0-9]{4}){4} [A-Za-z0-9]{2})",
        r"|(?i:AE|GI|IL|IQ|OM|SO|TL)[0-9]{2}(?:[A-Za-z0-9]{19}|(?: [A-Za-z0-9]{4}){4} [A-Za-z0-9]{3})",
        r"|(?i:AD|CZ|ES|MD|PK|RO|SA|SE|SK|TN|VG)[0-9]{2}(?:[A-Za-z0-9]{20}|(?: [A-Za-z0-9]{4}){5})",
        r"|(?i:LY|PT|ST)[0-9]{2}(?:[A-Za-z0-9]{21}|(?: [A-Za-z0-9]{4}){5} [A-Za-z0-9]{1})",
        r"|(?i:IS|TR)[0-9]{2}(?:[A-Za-z0-9]{22}|(?: [A-Za-z0-9]{4}){5} [A-Za-z0-9]{2})",
        r"|(?i:BI|DJ|FR|GR|IT|MC|MR|SM)[0-9]{2}(?:[A-Za-z0-9]{23}|(?: [A-Za-z0-9]{4}){5} [A-Za-z0-9]{3})",
        r"|(?i:AL|AZ|BY|CY|DO|GT|HN|HU|LB|NI|PL|SV)[0-9]{2}(?:[A-Za-z0-9]{24}|(?: [A-Za-z0-9]{4}){6})",
        r"|(?i:BR|EG|PS|QA|UA)[0-9]{2}(?:[A-Za-z0-9]{25}|(?: [A-Za-z0-9]{4}){6} [A-Za-z0-9]{1})",
        r"|(?i:JO|KW|MU|YE)[0-9]{2}(?:[A-Za-z0-9]{26}|(?: [A-Za-z0-9]{4}){6} [A-Za-z0-9]{2})",
        r"|(?i:MT|SC)[0-9]{2}(?:[A-Za-z0-9]{27}|(?: [A-Za-z0-9]{4}){6} [A-Za-z0-9]{3})",
        r"|(?i:LC)[0-9]{2}(?:[A-Za-z0-9]{28}|(?: [A-Za-z0-9]{4}){7})",
        r"|(?i:RU)[0-9]{2}(?:[A-Za-z0-9]{29}|(?: [A-Za-z0-9]{4}){7} [A-Za-z0-9]{1})",
        r")\b",
    ),
    validate: Some(valid_iban),
}];

static US_SSN: &[BuiltinPattern] = &[
    BuiltinPattern {
        kind: "ssn",
        // The optional tail swallows a longer dash run ("123-45-6789-12") so the check
        // rejects it instead of flagging its first eleven bytes.
        regex: r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}(?:-[0-9]{1,4})?\b",
        validate: Some(valid_ssn),
    },
    BuiltinPattern {
        kind: "ssn_spaced",
        regex: r"\b[0-9]{3} [0-9]{2} [0-9]{4}(?: [0-9]{1,4})?\b",
        validate: Some(valid_ssn),
    },
];

static IP_ADDRESS: &[BuiltinPattern] = &[
    BuiltinPattern {
        kind: "ipv4",
        // The optional fifth part swallows "1.2.3.4.5" so the check rejects it; `\b` keeps a
        // quad from starting after a letter ("v1.2.3.4") or running into more digits.
        regex: r"\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:\.[0-9]{1,3})?\b",
        validate: Some(valid_ipv4),
    },
    BuiltinPattern {
        kind: "ipv6",
        // Starts at a hex group (after a non-word byte) or at "::" (after a non-word byte);
        // groups of 0-4 hex digits; optionally a dotted-quad tail (tried first, so
        // "::ffff:192.0.2.1" is not cut at "192"); then one optional word byte that makes the
        // check reject a run that goes on ("2001:db8::12345", "f32::abs").
        regex: concat!(
            r"(?:\b[0-9A-Fa-f]{1,4}(?:(?::[0-9A-Fa-f]{0,4}){1,6}:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|(?::[0-9A-Fa-f]{0,4}){2,7})",
            r"|\B:(?:(?::[0-9A-Fa-f]{0,4}){0,5}:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|(?::[0-9A-Fa-f]{0,4}){1,7}))",
            r"[0-9A-Za-z_]?",
        ),
        validate: Some(valid_ipv6),
    },
];

static SECRETS: &[BuiltinPattern] = &[
    BuiltinPattern {
        kind: "openai_project_key",
        regex: r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}",
        validate: None,
    },
    BuiltinPattern {
        kind: "anthropic_key",
        regex: r"\bsk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{80,200}",
        validate: None,
    },
    BuiltinPattern {
        kind: "openai_key",
        // Legacy keys: `sk-` and 40+ alphanumerics (often with T3BlbkFJ inside). `sk-learn`,
        // `sk-ant-...` and `sk-proj-...` never have 40 alphanumerics right after `sk-`.
        regex: r"\bsk-[A-Za-z0-9]{40,200}",
        validate: None,
    },
    BuiltinPattern {
        kind: "aws_access_key",
        regex: r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
        validate: None,
    },
    BuiltinPattern {
        kind: "github_token",
        regex: r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b",
        validate: None,
    },
    BuiltinPattern {
        kind: "github_fine_grained_token",
        regex: r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
        validate: None,
    },
    BuiltinPattern {
        kind: "slack_token",
        regex: r"\bxox[abposr]-[0-9A-Za-z-]{10,250}",
        validate: Some(valid_slack_token),
    },
    BuiltinPattern {
        kind: "google_api_key",
        // Exactly 35 characters after `AIza`: up to 8 more are matched so the check can
        // reject a longer run instead of flagging its prefix.
        regex: r"\bAIza[0-9A-Za-z_-]{35,43}",
        validate: Some(valid_google_api_key),
    },
    BuiltinPattern {
        kind: "bearer_token",
        // RFC 6750 b64token characters, not ending in '.' (a full stop after the token).
        // The length caps the whole match at 1024 bytes; a longer token is flagged by its
        // first 1012 bytes.
        regex: r"\b(?i:bearer)[ \t]{1,4}[A-Za-z0-9._~+/-]{19,1011}[A-Za-z0-9_~+/-]={0,2}",
        validate: Some(valid_bearer),
    },
    BuiltinPattern {
        kind: "private_key_block",
        // A whole PEM/PGP private key block when it fits in 1024 bytes (EC, Ed25519 and
        // short test keys), so masking hides the key material too.
        regex: concat!(
            r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
            r"[A-Za-z0-9+/=\\\r\n\t :,.-]{1,940}",
            r"-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "private_key_begin",
        // Longer keys (RSA 2048 and up) are flagged by their BEGIN line.
        regex: r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
        validate: None,
    },
    BuiltinPattern {
        kind: "jwt",
        // header.payload.signature; 3+150+1+3+500+1+350 <= 1024 covers HS, ES and RS256.
        regex: r"\beyJ[A-Za-z0-9_-]{5,150}\.eyJ[A-Za-z0-9_-]{5,500}\.[A-Za-z0-9_-]{10,350}\b",
        validate: Some(valid_jwt),
    },
    BuiltinPattern {
        kind: "jwt_long",
        // A token too long for the pattern above is flagged by its header and payload.
        regex: r"\beyJ[A-Za-z0-9_-]{5,150}\.eyJ[A-Za-z0-9_-]{5,860}",
        validate: Some(valid_jwt),
    },
];

// Phrase families: case-insensitive, 1-3 whitespace bytes between words, word-bounded. They
// need a verb aimed at the model's instructions, so "don't ignore the previous error
// message" or "the instructions above were helpful" stay clean. "DAN" is matched in capitals
// only, so "Dan from finance" is never the jailbreak persona.
static PROMPT_INJECTION: &[BuiltinPattern] = &[
    BuiltinPattern {
        kind: "ignore_previous_instructions",
        regex: concat!(
            r"(?i)\b(?:ignore|disregard|forget|skip|override|bypass)\s{1,3}",
            r"(?:(?:all|any|the|your|my|these|those|every|of)\s{1,3}){0,3}",
            r"(?:(?:previous|prior|preceding|above|earlier|former|initial|original|system)\s{1,3}){1,2}",
            r"(?:instructions?|directions|rules|prompts?|guidelines|commands|context|messages)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "ignore_instructions_above",
        regex: concat!(
            r"(?i)\b(?:ignore|disregard|forget)\s{1,3}",
            r"(?:(?:all|any|the|your|my|these|those|every|of)\s{1,3}){0,3}",
            r"(?:instructions?|directions|rules|prompts?|guidelines)\s{1,3}",
            r"(?:above|so\s{1,3}far|you\s{1,3}(?:were|have\s{1,3}been)\s{1,3}given)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "forget_everything",
        regex: concat!(
            r"(?i)\bforget\s{1,3}(?:everything|all)\s{1,3}",
            r"(?:(?:that\s{1,3})?you(?:\s{1,3}(?:were|have\s{1,3}been)|(?:'|’)ve\s{1,3}been)\s{1,3}(?:told|taught|instructed)",
            r"|above|before\s{1,3}(?:this|now)|previously|so\s{1,3}far)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "disregard_above",
        regex: r"(?i)\bdisregard\s{1,3}(?:(?:the|everything|all|of)\s{1,3}){1,3}above\b",
        validate: None,
    },
    BuiltinPattern {
        kind: "reveal_system_prompt",
        regex: concat!(
            r"(?i)\b(?:reveal|show|print|repeat|output|leak|display|dump)\s{1,3}(?:me\s{1,3})?(?:your|the)\s{1,3}",
            r"(?:(?:full|entire|exact|complete|whole)\s{1,3})?",
            r"(?:system\s{1,3}(?:prompt|message)|hidden\s{1,3}(?:instructions|prompt)|initial\s{1,3}instructions",
            r"|original\s{1,3}(?:prompt|instructions)|instructions\s{1,3}above)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "you_are_now",
        regex: concat!(
            r"(?i)\byou(?:\s{1,3}are|(?:'|’)re)\s{1,3}now\s{1,3}",
            r"(?:(?-i:DAN)|an?\s{1,3}(?:unfiltered|unrestricted|uncensored|jailbroken)",
            r"|in\s{1,3}(?:developer|jailbreak|(?-i:DAN)|god)\s{1,3}mode|jailbroken)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "act_without_restrictions",
        regex: concat!(
            r"(?i)\b(?:act|behave|respond|answer|reply)\s{1,3}as\s{1,3}(?:if|though)\s{1,3}",
            r"(?:you\s{1,3}(?:have|had|were\s{1,3}under)|there\s{1,3}(?:are|were|is|was))\s{1,3}no\s{1,3}",
            r"(?:(?:content|safety|ethical)\s{1,3})?",
            r"(?:restrictions|rules|guidelines|filters|limits|limitations|policies|policy|boundaries)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "pretend_unfiltered",
        regex: concat!(
            r"(?i)\bpretend\s{1,3}(?:that\s{1,3})?(?:you\s{1,3}are|you(?:'|’)re|to\s{1,3}be)\s{1,3}",
            r"(?:an?\s{1,3})?(?:unfiltered|unrestricted|uncensored|evil|jailbroken|unaligned)\s{1,3}",
            r"(?:AI|assistant|model|chatbot|bot|LLM|language\s{1,3}model)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "jailbreak_mode",
        // "developer mode" and "god mode" alone are left out: enabling them is an everyday
        // request about phones, browsers and games.
        regex: concat!(
            r"(?i)\b(?:(?:enable|enter|activate|switch\s{1,3}to|turn\s{1,3}on)\s{1,3}(?:(?:the|a)\s{1,3})?",
            r"(?:jailbreak|jailbroken|(?-i:DAN))\s{1,3}mode",
            r"|(?:jailbreak|(?-i:DAN))\s{1,3}mode\s{0,3}[:=-]?\s{0,3}(?:on|enabled|activated|engaged))\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "new_instructions",
        regex: r"(?i)\bnew\s{1,3}(?:system\s{1,3})?instructions\s{0,2}:",
        validate: None,
    },
    BuiltinPattern {
        kind: "override_safety",
        regex: concat!(
            r"(?i)\b(?:override|bypass|ignore)\s{1,3}(?:your|the|all|any)\s{1,3}",
            r"(?:(?:safety|content|moderation)\s{1,3}){1,2}",
            r"(?:guidelines|policy|policies|filters?|rules|restrictions|protocols)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "ignore_previous_instructions_fr",
        regex: concat!(
            r"(?i)\b(?:ignore[rz]?|oublie[rz]?)\s{1,3}(?:(?:toutes|tous|les|tes|vos)\s{1,3}){0,2}",
            r"(?:instructions|consignes|r(?:è|e)gles)\s{1,3}(?:pr(?:é|e)c(?:é|e)dentes|ant(?:é|e)rieures)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "ignore_previous_instructions_de",
        regex: concat!(
            r"(?i)\b(?:ignorier(?:e|en)?|vergiss)\s{1,3}(?:Sie\s{1,3})?(?:(?:alle|die|deine|ihre)\s{1,3}){0,2}",
            r"(?:vorherigen|bisherigen|vorigen|fr(?:ü|ue)heren)\s{1,3}(?:Anweisungen|Instruktionen|Befehle|Regeln)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "ignore_previous_instructions_es",
        regex: concat!(
            r"(?i)\b(?:ignora|ignore|olvida)\s{1,3}(?:(?:todas|las|tus|sus)\s{1,3}){0,2}",
            r"(?:instrucciones|reglas|indicaciones)\s{1,3}(?:anteriores|previas)\b",
        ),
        validate: None,
    },
    BuiltinPattern {
        kind: "ignore_previous_instructions_ja",
        regex: r"(?:これまでの|以前の|前の|上記の)(?:すべての|全ての)?指示を(?:すべて|全て)?無視",
        validate: None,
    },
];

// === Validators ===

/// Email: no ".." in the local part, which also does not end with '.', and a domain of at
/// most 253 bytes.
pub(crate) fn valid_email(m: &[u8]) -> bool {
    let Some(at) = m.iter().position(|&b| b == b'@') else {
        return false;
    };
    let (local, domain) = (&m[..at], &m[at + 1..]);
    !local.is_empty()
        && local.len() <= 64
        && !local.windows(2).any(|w| w == b"..")
        && local.first() != Some(&b'.')
        && local.last() != Some(&b'.')
        && !domain.is_empty()
        && domain.len() <= 253
}

/// Phone: 7 to 15 digits in all (E.164) and not shaped like a date (2024-05-06, 06.05.2024).
pub(crate) fn valid_phone(m: &[u8]) -> bool {
    let digits = m.iter().filter(|b| b.is_ascii_digit()).count();
    (7..=15).contains(&digits) && !looks_like_date(m)
}

/// Three digit groups split by one separator, shaped year-month-day or day-month-year.
fn looks_like_date(m: &[u8]) -> bool {
    let mut groups = [0u32; 3];
    let mut lens = [0usize; 3];
    let mut k = 0;
    let mut in_group = false;
    for &b in m {
        if b.is_ascii_digit() {
            if !in_group {
                if k == 3 {
                    return false;
                }
                in_group = true;
                k += 1;
            }
            if lens[k - 1] < 9 {
                groups[k - 1] = groups[k - 1] * 10 + u32::from(b - b'0');
            }
            lens[k - 1] += 1;
        } else {
            in_group = false;
        }
    }
    if k != 3 {
        return false;
    }
    let year = |g: usize| lens[g] == 4 && (1900..=2099).contains(&groups[g]);
    let day_month = |d: usize, mo: usize| {
        lens[d] <= 2
            && lens[mo] <= 2
            && (1..=31).contains(&groups[d])
            && (1..=12).contains(&groups[mo])
    };
    (year(0) && (day_month(2, 1) || day_month(1, 2)))
        || (year(2) && (day_month(0, 1) || day_month(1, 0)))
}

/// Payment card: 13-19 digits with one kind of separator at most, a valid Luhn check digit,
/// and a known issuer prefix with a length that issuer uses.
pub(crate) fn valid_payment_card(m: &[u8]) -> bool {
    let mut sep = None;
    let mut n = 0usize;
    let mut prefix = 0u32;
    for &b in m {
        match b {
            b'0'..=b'9' => {
                if n < 6 {
                    prefix = prefix * 10 + u32::from(b - b'0');
                }
                n += 1;
            }
            b' ' | b'-' => {
                if sep.is_some_and(|s| s != b) {
                    return false;
                }
                sep = Some(b);
            }
            _ => return false,
        }
    }
    if !(13..=19).contains(&n) {
        return false;
    }
    let mut sum = 0u32;
    for (i, d) in m.iter().rev().filter(|b| b.is_ascii_digit()).enumerate() {
        let mut d = u32::from(d - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10) && known_issuer(prefix, n)
}

/// Whether the first six digits `p6` and length `n` fit a card network's ranges.
fn known_issuer(p6: u32, n: usize) -> bool {
    let (p1, p2, p3, p4) = (p6 / 100_000, p6 / 10_000, p6 / 1_000, p6 / 100);
    let visa = p1 == 4 && matches!(n, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16;
    let amex = (p2 == 34 || p2 == 37) && n == 15;
    let discover = (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && n >= 16;
    let jcb = (3528..=3589).contains(&p4) && n >= 16;
    let diners = ((300..=305).contains(&p3) || p2 == 36 || p2 == 38) && n >= 14;
    let unionpay = p2 == 62 && n >= 16;
    let maestro = p2 == 50 || (56..=69).contains(&p2);
    visa || mastercard || amex || discover || jcb || diners || unionpay || maestro
}

/// IBAN: spaces removed and letters uppercased, the length is the country's and the
/// mod-97 checksum is 1.
pub(crate) fn valid_iban(m: &[u8]) -> bool {
    let mut chars = [0u8; 34];
    let mut n = 0;
    for &b in m {
        if b == b' ' {
            continue;
        }
        if !b.is_ascii_alphanumeric() || n == chars.len() {
            return false;
        }
        chars[n] = b.to_ascii_uppercase();
        n += 1;
    }
    if n < 5 || !chars[..2].iter().all(u8::is_ascii_alphabetic) {
        return false;
    }
    if !chars[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let country = [chars[0], chars[1]];
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
        return false;
    };
    if n != usize::from(len) {
        return false;
    }
    let mut rem = 0u32;
    for &c in chars[4..n].iter().chain(&chars[..4]) {
        rem = if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    rem == 1
}

/// US SSN: AAA-GG-SSSS (or with spaces) and nothing more; area not 000, 666 or 900-999,
/// group not 00, serial not 0000.
pub(crate) fn valid_ssn(m: &[u8]) -> bool {
    let [a0, a1, a2, s1, g0, g1, s2, r0, r1, r2, r3] = *m else {
        return false;
    };
    let digits = [a0, a1, a2, g0, g1, r0, r1, r2, r3];
    if !digits.iter().all(u8::is_ascii_digit) || s1 != s2 || !(s1 == b'-' || s1 == b' ') {
        return false;
    }
    let num = |ds: &[u8]| {
        ds.iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let area = num(&[a0, a1, a2]);
    area != 0 && area != 666 && area < 900 && num(&[g0, g1]) != 0 && num(&[r0, r1, r2, r3]) != 0
}

/// IPv4: exactly four octets, each 0-255, without leading zeros.
pub(crate) fn valid_ipv4(m: &[u8]) -> bool {
    let mut parts = 0;
    for octet in m.split(|&b| b == b'.') {
        parts += 1;
        let ok = match octet {
            [d] => d.is_ascii_digit(),
            [b'1'..=b'9', rest @ ..] if rest.len() <= 2 && rest.iter().all(u8::is_ascii_digit) => {
                octet
                    .iter()
                    .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
                    <= 255
            }
            _ => false,
        };
        if !ok || parts > 4 {
            return false;
        }
    }
    parts == 4
}

/// IPv6: `std::net::Ipv6Addr` parses it, it has at least two ':' and a decimal digit (so
/// the bare "::" of C++ and Rust paths like "a::b" are not addresses).
pub(crate) fn valid_ipv6(m: &[u8]) -> bool {
    let colons = m.iter().filter(|&&b| b == b':').count();
    if colons < 2 || !m.iter().any(u8::is_ascii_digit) {
        return false;
    }
    std::str::from_utf8(m).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Slack token: after `xox?-`, at least two non-empty parts separated by '-'.
pub(crate) fn valid_slack_token(m: &[u8]) -> bool {
    let Some(rest) = m.get(5..) else {
        return false;
    };
    rest.split(|&b| b == b'-').filter(|p| !p.is_empty()).count() >= 2
}

/// Google API key: `AIza` and exactly 35 more characters.
pub(crate) fn valid_google_api_key(m: &[u8]) -> bool {
    m.len() == 39
}

/// Bearer token: the token has at least one digit and one letter, which prose ("bearer of
/// the ...") and placeholders do not.
pub(crate) fn valid_bearer(m: &[u8]) -> bool {
    let token = m.get(6..).unwrap_or_default();
    let token = match token.iter().position(|&b| b != b' ' && b != b'\t') {
        Some(i) => &token[i..],
        None => return false,
    };
    token.iter().any(u8::is_ascii_digit) && token.iter().any(u8::is_ascii_alphabetic)
}

/// JWT: the first segment base64url-decodes to a JSON object naming `"alg"`.
pub(crate) fn valid_jwt(m: &[u8]) -> bool {
    let header = m.split(|&b| b == b'.').next().unwrap_or_default();
    let mut buf = [0u8; 120];
    let Some(json) = base64url_decode(header, &mut buf) else {
        return false;
    };
    let json = json.trim_ascii_start();
    json.first() == Some(&b'{') && json.windows(5).any(|w| w == b"\"alg\"")
}

/// Decodes unpadded base64url into `out`, returning the decoded bytes; `None` on a byte
/// outside the alphabet or if `out` is too small. Trailing bits of a partial quantum are
/// dropped.
fn base64url_decode<'a>(input: &[u8], out: &'a mut [u8]) -> Option<&'a [u8]> {
    let mut n = 0;
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    out.get(..n)
}
