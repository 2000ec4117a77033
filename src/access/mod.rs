//! Who may use the API, and for what: roles, bearer tokens (stored as
//! hashes), the proof a server gives that it holds a token before a client
//! sends it, and the audit entry every operator and admin action leaves.
//!
//! Plain code: no actix, no I/O. The HTTP layer (`http::access`) maps each
//! route to the role it needs and records the audit; the store keeps the
//! entries; the CLI issues tokens and checks servers with [`proof`].
//!
//! **Tokens** are 256 random bits (`pp_` and 64 hex digits). The
//! configuration keeps only a hash of each (`[[server.tokens]]`,
//! [`TokenHash`]): BLAKE3 in its key-derivation mode under a context string
//! of its own. A salt or a slow hash defends guessable secrets; these are
//! not guessable (2^256), so neither would add anything. Hashes are
//! compared in constant time. `server.token` (`POWERPULSE_TOKEN`), a token
//! chosen by the operator, keeps working as an admin named `server.token`.
//!
//! **Proof.** A client that is about to send its token (or a file) first
//! sends a random nonce and the [`KeyId`] of its key; the server answers
//! the keyed BLAKE3 of the nonce and its port under that key
//! ([`ProofKey::answer`]). Only a server holding the key can answer, so a
//! process that took the server's port, or a runtime file pointing
//! elsewhere, learns nothing. A token's key is its hash: the configuration
//! holding `[[server.tokens]]` must be readable by the server's user alone
//! (anyone who can read a hash can answer for it). The packaged service
//! reads its configuration as a systemd credential, so the file is root's.

mod audit;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use audit::{Action, AuditEntry, AuditFilter};

/// What a token may do, each role everything the one before may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
// (`model::Role` is a message sender's: the document needs two names.)
#[schema(as = TokenRole)]
pub enum Role {
    /// Summaries, insights, conversation lists and results, exports;
    /// transcripts with personal data redacted.
    Viewer,
    /// Also uploads, estimates, cancel and resume, and full transcripts.
    Operator,
    /// Also deletes, backups and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a role: viewer, operator or admin"))
    }
}

/// The prefix of every token `powerpulse token add` issues.
pub const TOKEN_PREFIX: &str = "pp_";

/// A new token: [`TOKEN_PREFIX`] and 32 random bytes in hex.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// BLAKE3 key-derivation context of token hashes (changing it changes
/// every hash).
const TOKEN_CONTEXT: &str = "PowerPulse 2026-12 bearer token hash v1";

/// What the configuration keeps of a token: `blake3:` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of a token as it is presented (surrounding spaces ignored).
    pub fn of(token: &str) -> Self {
        TokenHash(blake3::derive_key(TOKEN_CONTEXT, token.trim().as_bytes()))
    }

    /// Compares in constant time.
    pub fn matches(&self, other: &TokenHash) -> bool {
        blake3::Hash::from_bytes(self.0) == blake3::Hash::from_bytes(other.0)
    }

    /// The key the server proves the token with.
    pub fn proof_key(&self) -> ProofKey {
        ProofKey(self.0)
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", hex::encode(self.0))
    }
}

/// Never printed whole: it is the key a server proves itself with.
impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash(blake3:{}…)", hex::encode(&self.0[..2]))
    }
}

impl FromStr for TokenHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            "a token hash is \"blake3:\" and 64 hex digits, as `powerpulse token add` prints it"
                .to_string()
        };
        let hex_digits = s.strip_prefix("blake3:").ok_or_else(bad)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| bad())?;
        Ok(TokenHash(bytes))
    }
}

impl Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One `[[server.tokens]]` entry: who holds the token, their role, the
/// token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Who holds it (a person, a script): what the audit log says.
    pub name: String,
    pub role: Role,
    pub hash: TokenHash,
}

/// The name `server.token` (`POWERPULSE_TOKEN`) goes by.
pub const SERVER_TOKEN_NAME: &str = "server.token";

/// Who calls when no token is configured.
pub const ANONYMOUS: &str = "anonymous";

/// Who is calling, as their token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    /// The token's name (`[[server.tokens]]`), `server.token`, or
    /// `anonymous` on a server without tokens.
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// The caller of a server without tokens: anyone who can connect may
    /// do anything.
    pub fn anonymous() -> Self {
        Principal {
            name: ANONYMOUS.to_string(),
            role: Role::Admin,
        }
    }
}

/// Why a request's token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("no bearer token")]
    Missing,
    #[error("the bearer token is not one this server knows")]
    Unknown,
}

/// The tokens a server accepts, and the keys it can prove.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    credentials: Vec<Credential>,
    /// A key only the server and whoever may read its runtime file know
    /// (never a credential: it proves the server, it grants nothing).
    local: Option<ProofKey>,
}

impl Keyring {
    /// `server.token` (an admin) and `[[server.tokens]]`.
    pub fn new(server_token: Option<&str>, tokens: &[Credential]) -> Self {
        let mut credentials: Vec<Credential> = server_token
            .filter(|t| !t.trim().is_empty())
            .map(|t| Credential {
                name: SERVER_TOKEN_NAME.to_string(),
                role: Role::Admin,
                hash: TokenHash::of(t),
            })
            .into_iter()
            .collect();
        credentials.extend(tokens.iter().cloned());
        Keyring {
            credentials,
            local: None,
        }
    }

    /// Adds the key of the server's runtime file, which a local client
    /// without a token checks the server with.
    pub fn with_local_key(mut self, key: ProofKey) -> Self {
        self.local = Some(key);
        self
    }

    /// No token configured: every caller is [`Principal::anonymous`].
    pub fn is_open(&self) -> bool {
        self.credentials.is_empty()
    }

    /// Who the bearer token (the `Authorization: Bearer` value) belongs to.
    /// Every credential is compared, in constant time each, whichever matches.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, Unauthenticated> {
        if self.is_open() {
            return Ok(Principal::anonymous());
        }
        let presented = TokenHash::of(bearer.ok_or(Unauthenticated::Missing)?);
        let mut found = None;
        for c in &self.credentials {
            if c.hash.matches(&presented) && found.is_none() {
                found = Some(c);
            }
        }
        found
            .map(|c| Principal {
                name: c.name.clone(),
                role: c.role,
            })
            .ok_or(Unauthenticated::Unknown)
    }

    /// The key a client names by `id`, if this server holds it.
    pub fn proof_key(&self, id: &KeyId) -> Option<ProofKey> {
        self.credentials
            .iter()
            .map(|c| c.hash.proof_key())
            .chain(self.local)
            .find(|k| k.id() == *id)
    }
}

/// A key a server proves it holds (a token's hash, or its runtime key).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ProofKey([u8; 32]);

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProofKey(…)")
    }
}

impl ProofKey {
    /// A fresh random key (a server's runtime key).
    pub fn generate() -> Self {
        ProofKey(rand::random())
    }

    /// Its public name: says which key, reveals nothing of it.
    pub fn id(&self) -> KeyId {
        let h = blake3::keyed_hash(&self.0, b"PowerPulse key id v1");
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.as_bytes()[..8]);
        KeyId(id)
    }

    /// What the server answers to a client's `nonce`, reached on `port`:
    /// a server elsewhere (relaying the question) answers for its own port.
    pub fn answer(&self, nonce: &Nonce, port: u16) -> Proof {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"PowerPulse proof v1\0");
        h.update(&nonce.0);
        h.update(&port.to_be_bytes());
        Proof(*h.finalize().as_bytes())
    }

    /// Whether `proof` answers `nonce` on `port` (constant time).
    pub fn verify(&self, nonce: &Nonce, port: u16, proof: &Proof) -> bool {
        blake3::Hash::from_bytes(self.answer(nonce, port).0) == blake3::Hash::from_bytes(proof.0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for ProofKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex(s).map(ProofKey)
    }
}

/// A [`ProofKey`]'s name: 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; 8]);

/// A client's challenge: 32 random bytes, 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonce([u8; 32]);

impl Nonce {
    pub fn generate() -> Self {
        Nonce(rand::random())
    }
}

/// A server's answer to a [`Nonce`]: 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof([u8; 32]);

/// Hex text of these values, and back.
macro_rules! hex_text {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex(s).map($t)
            }
        }
    )*};
}
hex_text!(KeyId, Nonce, Proof);

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    hex::decode_to_slice(s, &mut bytes).map_err(|_| format!("expected {} hex digits", 2 * N))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(name: &str, role: Role, token: &str) -> Credential {
        Credential {
            name: name.into(),
            role,
            hash: TokenHash::of(token),
        }
    }

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn tokens_are_random_and_their_hashes_round_trip() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with("pp_") && a.len() == 3 + 64);
        let h = TokenHash::of(&a);
        assert_eq!(h.to_string().parse::<TokenHash>(), Ok(h));
        assert!(h.to_string().starts_with("blake3:"));
        assert!(h.matches(&TokenHash::of(&format!(" {a}\n"))));
        assert!(!h.matches(&TokenHash::of(&b)));
        for bad in [
            "",
            "blake3:",
            "sha256:00",
            "blake3:zz",
            &format!("blake3:{}", "0".repeat(62)),
        ] {
            assert!(bad.parse::<TokenHash>().is_err(), "{bad}");
        }
        // Debug never shows the hash.
        assert!(!format!("{h:?}").contains(&h.to_string()[7..20]));
    }

    #[test]
    fn a_token_names_its_holder_and_a_server_without_tokens_is_open() {
        let ring = Keyring::new(
            Some("chosen-by-hand"),
            &[
                credential("alice", Role::Viewer, "pp_alice"),
                credential("ci", Role::Operator, "pp_ci"),
            ],
        );
        assert!(!ring.is_open());
        let who = |t| ring.authenticate(t).map(|p| (p.name, p.role));
        assert_eq!(who(Some("pp_alice")), Ok(("alice".into(), Role::Viewer)));
        assert_eq!(who(Some("pp_ci")), Ok(("ci".into(), Role::Operator)));
        assert_eq!(
            who(Some("chosen-by-hand")),
            Ok((SERVER_TOKEN_NAME.into(), Role::Admin))
        );
        assert_eq!(who(Some("pp_bob")), Err(Unauthenticated::Unknown));
        assert_eq!(who(None), Err(Unauthenticated::Missing));

        let open = Keyring::new(Some("  "), &[]);
        assert!(open.is_open());
        assert_eq!(open.authenticate(None), Ok(Principal::anonymous()));
        assert_eq!(
            open.authenticate(Some("anything")),
            Ok(Principal::anonymous())
        );
    }

    #[test]
    fn only_a_holder_of_the_key_answers_the_challenge() {
        let token = generate_token();
        let local = ProofKey::generate();
        let ring =
            Keyring::new(None, &[credential("alice", Role::Viewer, &token)]).with_local_key(local);
        let client_key = TokenHash::of(&token).proof_key();
        let nonce = Nonce::generate();
        let held = ring.proof_key(&client_key.id()).unwrap();
        let proof = held.answer(&nonce, 8080);
        assert!(client_key.verify(&nonce, 8080, &proof));
        // Another port (a relay), another nonce, another key: no.
        assert!(!client_key.verify(&nonce, 8081, &proof));
        assert!(!client_key.verify(&Nonce::generate(), 8080, &proof));
        assert!(!ProofKey::generate().verify(&nonce, 8080, &proof));
        // The runtime key is known; a stranger's is not.
        assert_eq!(ring.proof_key(&local.id()), Some(local));
        assert_eq!(ring.proof_key(&ProofKey::generate().id()), None);
        // Hex round trips.
        assert_eq!(nonce.to_string().parse::<Nonce>(), Ok(nonce));
        assert_eq!(proof.to_string().parse::<Proof>(), Ok(proof));
        assert_eq!(local.to_hex().parse::<ProofKey>(), Ok(local));
        let id = client_key.id();
        assert_eq!(id.to_string().len(), 16);
        assert_eq!(id.to_string().parse::<KeyId>(), Ok(id));
        assert!("00".parse::<Nonce>().is_err());
    }
}
