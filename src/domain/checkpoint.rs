//! Checkpoints (E2): a realm's tree head in the C2SP `tlog-checkpoint`
//! text, `<origin>\n<size>\n<base64 root>\n` plus optional extension
//! lines, signed as a `signed-note`. The origin names the realm's log,
//! `<PORTAL_ACCESS_LOG_ORIGIN>/<realm id>`, so a checkpoint of one realm
//! can never pass for another's.

use base64::{Engine, engine::general_purpose::STANDARD};
use uuid::Uuid;

use super::merkle::Hash;
use super::signed_note::{NoteError, NoteSigner, VerifierKey, open_note, sign_note};

/// `PORTAL_ACCESS_LOG_ORIGIN` when unset.
pub const DEFAULT_ORIGIN_PREFIX: &str = "portal-access";

/// The origin of a realm's log (E2).
pub fn realm_origin(prefix: &str, realm_id: Uuid) -> String {
    format!("{prefix}/{realm_id}")
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    /// The text is not origin / size / root / extensions.
    Malformed(&'static str),
    /// The signed note around it failed.
    Note(NoteError),
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Malformed(why) => write!(f, "malformed checkpoint: {why}"),
            CheckpointError::Note(error) => write!(f, "checkpoint signature: {error}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

impl From<NoteError> for CheckpointError {
    fn from(error: NoteError) -> Self {
        CheckpointError::Note(error)
    }
}

/// A tree head. Built only through [`Checkpoint::new`] or
/// [`Checkpoint::parse`], so its text form is always well-formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    /// Ours carry no extension lines (the spec advises against them: log
    /// monitors cannot audit them). The origin must be a line of printable
    /// text without spaces or `+`, as the spec recommends.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if origin.is_empty() || origin.contains('+') || origin.chars().any(char::is_whitespace) {
            return Err(CheckpointError::Malformed(
                "the origin must be non-empty, without spaces or '+'",
            ));
        }
        if origin.chars().any(char::is_control) {
            return Err(CheckpointError::Malformed(
                "control characters in the origin",
            ));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// Parses a checkpoint's note text (as [`open_checkpoint`] returns it
    /// after the signature checked). Any non-empty origin is accepted, as
    /// the spec requires of clients.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        let (Some(size), Some(root)) = (lines.next(), lines.next()) else {
            return Err(CheckpointError::Malformed(
                "needs origin, size and root lines",
            ));
        };
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("empty origin"));
        }
        let size = parse_size(size)?;
        let root = STANDARD
            .decode(root)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes).ok())
            .ok_or(CheckpointError::Malformed(
                "the root is not a base64 SHA-256 hash",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n[extensions\n]`.
    pub fn text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The signed note: what `GetLogCheckpoint` and the stream hand out.
    pub fn sign(&self, signers: &[&NoteSigner]) -> Result<String, CheckpointError> {
        Ok(sign_note(&self.text(), signers)?)
    }
}

/// Decimal, no sign, no leading zero (except "0"), fits u64.
fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let malformed = CheckpointError::Malformed("the size is not a decimal number");
    if line.is_empty()
        || !line.bytes().all(|b| b.is_ascii_digit())
        || (line.len() > 1 && line.starts_with('0'))
    {
        return Err(malformed);
    }
    line.parse().map_err(|_| malformed)
}

/// Verifies a signed checkpoint against `keys`, then parses its text.
pub fn open_checkpoint(note: &str, keys: &[VerifierKey]) -> Result<Checkpoint, CheckpointError> {
    let opened = open_note(note, keys)?;
    Checkpoint::parse(&opened.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2_c2sp_example_checkpoint_parses() {
        // c2sp.org/tlog-checkpoint's example.
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let checkpoint = Checkpoint::parse(text).unwrap();
        assert_eq!(checkpoint.origin(), "example.com/behind-the-sofa");
        assert_eq!(checkpoint.size(), 20852163);
        assert_eq!(
            STANDARD.encode(checkpoint.root()),
            "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        );
        assert_eq!(checkpoint.text(), text);
    }

    #[test]
    fn e2_malformed_checkpoints_are_refused() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for text in [
            format!("o\n1\n{root}"),
            "o\n1\n".to_owned(),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_owned(),
            format!("o\n1\n{root}\n\n"),
        ] {
            assert!(Checkpoint::parse(&text).is_err(), "{text:?}");
        }
        let with_extension = format!("o\n0\n{root}\nextra\n");
        assert_eq!(
            Checkpoint::parse(&with_extension).unwrap().extensions(),
            ["extra"]
        );
    }

    #[test]
    fn e2_realm_checkpoint_signs_and_opens() {
        let realm = Uuid::from_u128(0x0197_0000_0000_7000_8000_0000_0000_0001);
        let origin = realm_origin(DEFAULT_ORIGIN_PREFIX, realm);
        assert_eq!(origin, format!("portal-access/{realm}"));
        let signer = NoteSigner::from_seed(DEFAULT_ORIGIN_PREFIX, [9; 32]).unwrap();
        let checkpoint = Checkpoint::new(&origin, 3, [7; 32]).unwrap();
        let note = checkpoint.sign(&[&signer]).unwrap();
        assert!(note.starts_with(&format!("{origin}\n3\n")));
        assert!(note.contains("\n\n— portal-access "));
        assert_eq!(
            open_checkpoint(&note, &[signer.verifier_key()]),
            Ok(checkpoint)
        );
        let other = NoteSigner::from_seed(DEFAULT_ORIGIN_PREFIX, [8; 32]).unwrap();
        assert!(matches!(
            open_checkpoint(&note, &[other.verifier_key()]),
            Err(CheckpointError::Note(
                NoteError::NoVerifiableSignature { .. }
            ))
        ));
    }

    #[test]
    fn e2_origins_we_sign_are_single_clean_lines() {
        for bad in ["", "a b", "a+b", "a\nb"] {
            assert!(Checkpoint::new(bad, 0, [0; 32]).is_err(), "{bad:?}");
        }
    }
}
