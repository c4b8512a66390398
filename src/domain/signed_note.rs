//! Signed notes (E2), as C2SP `signed-note` defines them: a UTF-8 text
//! ending in a newline, a blank line, then one line per signature,
//! `— <key name> <base64(key id ‖ signature)>`. Only Ed25519 (signature
//! type 0x01) is supported: the spec asks implementations to pick the types
//! they need, and a verifier that knows one algorithm is easier to audit.
//!
//! Key id = the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`;
//! a verifier key is `<name>+<hex key id>+<base64(0x01 ‖ public key)>`,
//! the string customers configure (`GetLogVerifierKeys`, `log-key`). The
//! private key text is Go's `sumdb/note` form,
//! `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`, so a key file
//! is interchangeable with that tooling.

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 in `signed-note`.
pub const ED25519: u8 = 0x01;

/// More signature lines than this and the note is refused unread, as Go's
/// `note.Open` does (the spec asks verifiers to accept at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Why a key or note was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteError {
    /// Empty, or containing a Unicode space or `+`.
    InvalidKeyName(String),
    MalformedVerifierKey(&'static str),
    MalformedPrivateKey,
    /// Not the text/blank line/signature lines shape, or a control byte.
    MalformedNote(&'static str),
    /// No signature from any of the given keys: the note may be genuine
    /// but nothing vouches for it. Lists the keys that did sign.
    NoVerifiableSignature {
        signed_by: Vec<String>,
    },
    /// A signature from a known key that does not verify: the text (or
    /// the signature) was altered.
    InvalidSignature {
        key: String,
    },
    /// Two different given keys share a name and key id.
    AmbiguousKey {
        key: String,
    },
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::InvalidKeyName(name) => write!(
                f,
                "invalid key name {name:?}: it must be non-empty, without spaces or '+'"
            ),
            NoteError::MalformedVerifierKey(why) => write!(f, "malformed verifier key: {why}"),
            NoteError::MalformedPrivateKey => f.write_str("malformed private key"),
            NoteError::MalformedNote(why) => write!(f, "malformed signed note: {why}"),
            NoteError::NoVerifiableSignature { signed_by } if signed_by.is_empty() => {
                f.write_str("the note has no signature")
            }
            NoteError::NoVerifiableSignature { signed_by } => write!(
                f,
                "no signature from a given verifier key (signed by {})",
                signed_by.join(", ")
            ),
            NoteError::InvalidSignature { key } => {
                write!(f, "the signature of key {key} does not verify")
            }
            NoteError::AmbiguousKey { key } => {
                write!(f, "two different verifier keys are named {key}")
            }
        }
    }
}

impl std::error::Error for NoteError {}

/// Non-empty, no Unicode space, no `+` (the separator of key strings).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// `name+hash`, how keys are named in messages (as Go prints them).
fn key_label(name: &str, key_id: u32) -> String {
    format!("{name}+{key_id:08x}")
}

/// Splits `hex8+base64(0x01 ‖ 32 bytes)`, checking the id against the key.
fn parse_key_parts(name: &str, id_hex: &str, key_b64: &str) -> Option<(u32, [u8; 32])> {
    if !is_valid_key_name(name) || id_hex.len() != 8 {
        return None;
    }
    let id = u32::from_str_radix(id_hex, 16).ok()?;
    let bytes = STANDARD.decode(key_b64).ok()?;
    let (&alg, key) = bytes.split_first()?;
    let key: [u8; 32] = key.try_into().ok()?;
    (alg == ED25519).then_some((id, key))
}

/// The log's signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// An Ed25519 key from its 32-byte seed (RFC 8032 private key), e.g.
    /// 32 random bytes for a new key.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::InvalidKeyName(name.to_owned()));
        }
        let key = SigningKey::from_bytes(&seed);
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`; the id must
    /// match the key, so a mangled file is refused rather than used.
    pub fn parse_private_key(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.trim_end_matches('\n').splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(id_hex), Some(key_b64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(NoteError::MalformedPrivateKey);
        };
        let (id, seed) =
            parse_key_parts(name, id_hex, key_b64).ok_or(NoteError::MalformedPrivateKey)?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(NoteError::MalformedPrivateKey);
        }
        Ok(signer)
    }

    /// The text [`NoteSigner::parse_private_key`] reads: what the key file
    /// holds. A secret: never log it.
    pub fn private_key_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(bytes)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The signature line for `text`, newline included.
    fn signature_line(&self, text: &str) -> String {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        format!("— {} {}\n", self.name, STANDARD.encode(bytes))
    }
}

/// A public key a note may be checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// `<name>+<hex id>+<base64(0x01 ‖ public key)>`; the id must match
    /// the name and key, so any mangling is refused.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedVerifierKey(
                "expected <name>+<key id>+<key>",
            ));
        };
        let (id, key) = parse_key_parts(name, id_hex, key_b64).ok_or(
            NoteError::MalformedVerifierKey("bad name, key id or Ed25519 key encoding"),
        )?;
        if key_id(name, &key) != id {
            return Err(NoteError::MalformedVerifierKey(
                "the key id does not match the name and key",
            ));
        }
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedVerifierKey("not an Ed25519 public key"))?;
        Ok(Self {
            name: name.to_owned(),
            key_id: id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        // Strict: also refuses small-order keys and non-canonical points,
        // which no signature of ours ever has.
        self.key
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&signature))
            .is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(bytes)
        )
    }
}

impl std::str::FromStr for VerifierKey {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Signs `text` (which must end in a newline) with each signer.
pub fn sign_note(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::MalformedNote("the text must end with a newline"));
    }
    check_characters(text)?;
    let mut note = format!("{text}\n");
    for signer in signers {
        note.push_str(&signer.signature_line(text));
    }
    Ok(note)
}

/// A note whose text at least one given key vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, final newline included.
    pub text: String,
    /// `name+id` of each given key whose signature verified.
    pub verified_by: Vec<String>,
    /// `name+id` of signatures from keys not given (ignored, as the spec
    /// requires: a witness's cosignature, a rotated-out key).
    pub unverified: Vec<String>,
}

/// Checks the UTF-8 note `note` against `keys`: every signature from a
/// given key must verify, and at least one must be there.
pub fn open_note(note: &str, keys: &[VerifierKey]) -> Result<OpenedNote, NoteError> {
    check_characters(note)?;
    let split = note.rfind("\n\n").ok_or(NoteError::MalformedNote(
        "no blank line before the signatures",
    ))?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return Err(NoteError::MalformedNote(
            "the signatures must end with a newline",
        ));
    }
    let mut opened = OpenedNote {
        text: text.to_owned(),
        verified_by: Vec::new(),
        unverified: Vec::new(),
    };
    let lines: Vec<&str> = signatures[..signatures.len() - 1].split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::MalformedNote("too many signatures"));
    }
    for line in lines {
        let (name, id, signature) = parse_signature_line(line)?;
        let label = key_label(name, id);
        let mut known = keys.iter().filter(|k| k.name == name && k.key_id == id);
        let Some(key) = known.next() else {
            if !opened.unverified.contains(&label) {
                opened.unverified.push(label);
            }
            continue;
        };
        if known.any(|other| other != key) {
            return Err(NoteError::AmbiguousKey { key: label });
        }
        if opened.verified_by.contains(&label) {
            // A repeated signature by one key adds nothing (Go drops it).
            continue;
        }
        if !key.verifies(text, &signature) {
            return Err(NoteError::InvalidSignature { key: label });
        }
        opened.verified_by.push(label);
    }
    if opened.verified_by.is_empty() {
        return Err(NoteError::NoVerifiableSignature {
            signed_by: opened.unverified,
        });
    }
    Ok(opened)
}

/// `— <name> <base64(id ‖ signature)>` → (name, id, signature).
fn parse_signature_line(line: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let malformed = NoteError::MalformedNote("a signature line is not `— <name> <base64>`");
    let rest = line.strip_prefix("— ").ok_or(malformed.clone())?;
    let (name, b64) = rest.split_once(' ').ok_or(malformed.clone())?;
    let bytes = STANDARD.decode(b64).map_err(|_| malformed.clone())?;
    if !is_valid_key_name(name) || bytes.len() < 5 {
        return Err(malformed);
    }
    let id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    Ok((name, id, bytes[4..].to_vec()))
}

/// Notes are UTF-8 (guaranteed by `&str`) without control characters
/// other than newline.
fn check_characters(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::MalformedNote(
            "control characters other than newline",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors of golang.org/x/mod/sumdb/note/note_test.go.
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn peter() -> VerifierKey {
        VerifierKey::parse(PETER_VKEY).unwrap()
    }

    fn enoch() -> VerifierKey {
        VerifierKey::parse(ENOCH_VKEY).unwrap()
    }

    #[test]
    fn e2_go_sign_vector_is_reproduced_byte_for_byte() {
        let signer = NoteSigner::parse_private_key(PETER_SKEY).unwrap();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(signer.key_id(), 0xc74f20a3);
        assert_eq!(signer.verifier_key().to_string(), PETER_VKEY);
        assert_eq!(signer.private_key_text(), PETER_SKEY);
        let note = sign_note(TEXT, &[&signer]).unwrap();
        assert_eq!(note, format!("{TEXT}\n{PETER_SIG}"));
    }

    #[test]
    fn e2_c2sp_example_note_verifies() {
        // c2sp.org/signed-note, "Verifier keys / Example".
        let key = VerifierKey::parse(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap();
        let note = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let opened = open_note(note, &[key]).unwrap();
        assert_eq!(opened.text, "This is an example message.\n");
        assert_eq!(opened.verified_by, ["example.com/foo+530d903a"]);
    }

    #[test]
    fn e2_open_verifies_given_keys_and_ignores_others() {
        let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let opened = open_note(&note, &[peter()]).unwrap();
        assert_eq!(opened.text, TEXT);
        assert_eq!(opened.verified_by, ["PeterNeumann+c74f20a3"]);
        assert_eq!(opened.unverified, ["EnochRoot+af0cfe78"]);

        let both = open_note(&note, &[peter(), enoch()]).unwrap();
        assert_eq!(both.verified_by.len(), 2);
        assert!(both.unverified.is_empty());

        assert_eq!(
            open_note(&note, &[]),
            Err(NoteError::NoVerifiableSignature {
                signed_by: vec!["PeterNeumann+c74f20a3".into(), "EnochRoot+af0cfe78".into()]
            })
        );
        // A key listed twice is not ambiguous; repeated signatures count once.
        let twice = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}");
        let opened = open_note(&twice, &[enoch(), peter(), enoch()]).unwrap();
        assert_eq!(opened.verified_by.len(), 2);
    }

    #[test]
    fn e2_altered_text_or_signature_is_an_invalid_signature() {
        let altered = format!("{}\n{PETER_SIG}", TEXT.replace("answer", "Answer"));
        assert_eq!(
            open_note(&altered, &[peter()]),
            Err(NoteError::InvalidSignature {
                key: "PeterNeumann+c74f20a3".into()
            })
        );
        // Go's case: "ABCD" spliced into the signature.
        let spliced = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert_eq!(
            open_note(&spliced, &[peter()]),
            Err(NoteError::InvalidSignature {
                key: "PeterNeumann+c74f20a3".into()
            })
        );
    }

    #[test]
    fn e2_malformed_notes_are_refused() {
        let bad = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!(
                "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            ),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1)),
        ];
        for note in bad {
            assert!(
                matches!(
                    open_note(&note, &[peter()]),
                    Err(NoteError::MalformedNote(_))
                ),
                "{note:?}"
            );
        }
    }

    #[test]
    fn e2_every_mangled_verifier_key_is_refused() {
        // As Go's TestNewVerifier: every proper substring and every byte
        // bumped by one.
        assert!(VerifierKey::parse(PETER_VKEY).is_ok());
        let bytes = PETER_VKEY.as_bytes();
        for i in 0..=bytes.len() {
            for j in i + 1..=bytes.len() {
                if (i, j) != (0, bytes.len()) {
                    assert!(VerifierKey::parse(&PETER_VKEY[i..j]).is_err(), "{i}..{j}");
                }
            }
        }
        for i in 0..bytes.len() {
            let mut mangled = bytes.to_vec();
            mangled[i] += 1;
            let mangled = String::from_utf8(mangled).unwrap();
            assert!(VerifierKey::parse(&mangled).is_err(), "{mangled}");
        }
        // Wrong key length and unknown algorithm, each with a matching id.
        assert!(
            VerifierKey::parse(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            )
            .is_err()
        );
        assert!(
            VerifierKey::parse(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            )
            .is_err()
        );
    }

    #[test]
    fn e2_every_mangled_private_key_is_refused() {
        let bytes = PETER_SKEY.as_bytes();
        for i in 0..=bytes.len() {
            for j in i + 1..=bytes.len() {
                if (i, j) != (0, bytes.len()) {
                    assert!(NoteSigner::parse_private_key(&PETER_SKEY[i..j]).is_err());
                }
            }
        }
        for i in 0..bytes.len() {
            let mut mangled = bytes.to_vec();
            mangled[i] += 1;
            let mangled = String::from_utf8(mangled).unwrap();
            assert!(
                NoteSigner::parse_private_key(&mangled).is_err(),
                "{mangled}"
            );
        }
    }

    #[test]
    fn e2_key_names_follow_the_spec() {
        for good in ["portal-access", "example.com/log42", "ação"] {
            assert!(is_valid_key_name(good), "{good}");
        }
        for bad in ["", "a b", "a+b", "a\u{2003}b", "a\tb"] {
            assert!(!is_valid_key_name(bad), "{bad:?}");
            assert!(NoteSigner::from_seed(bad, [7; 32]).is_err());
        }
    }

    #[test]
    fn e2_a_new_key_round_trips_and_never_shows_its_secret() {
        let signer = NoteSigner::from_seed("portal-access", [42; 32]).unwrap();
        let again = NoteSigner::parse_private_key(&signer.private_key_text()).unwrap();
        assert_eq!(again.verifier_key(), signer.verifier_key());
        let vkey = signer.verifier_key().to_string();
        assert_eq!(VerifierKey::parse(&vkey).unwrap(), signer.verifier_key());
        let secret = STANDARD.encode([42u8; 32]);
        assert!(!format!("{signer:?}").contains(&secret[..20]));
        let note = sign_note("hello\n", &[&signer]).unwrap();
        assert!(open_note(&note, &[signer.verifier_key()]).is_ok());
        assert!(sign_note("no newline", &[&signer]).is_err());
    }

    #[test]
    fn e2_wrong_key_with_the_same_name_is_not_trusted() {
        let ours = NoteSigner::from_seed("portal-access", [1; 32]).unwrap();
        let theirs = NoteSigner::from_seed("portal-access", [2; 32]).unwrap();
        let note = sign_note("size 3\n", &[&theirs]).unwrap();
        assert!(matches!(
            open_note(&note, &[ours.verifier_key()]),
            Err(NoteError::NoVerifiableSignature { .. })
        ));
    }
}
