//! Who may do what to a clinical note, and the hashes that seal what was
//! signed (SPEC §6). The state machine itself is in [`crate::states`].

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::roles::Role;

/// How a note comes to be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// The author signs their own draft.
    Own,
    /// A provider co-signs a nurse's draft.
    Cosign,
}

/// Why a note rule refused, as a sentence for the 403 problem document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoteRefusal {
    #[error("Only the author may edit a draft note.")]
    EditNotAuthor,
    #[error("Only the author may discard a draft note.")]
    DiscardNotAuthor,
    #[error("Only the author may sign this draft; a provider may co-sign a nurse's draft.")]
    SignOthers,
}

/// A draft is edited by its author only: nobody writes in another's name.
pub fn may_edit(author: Uuid, actor: Uuid) -> Result<(), NoteRefusal> {
    if author == actor {
        Ok(())
    } else {
        Err(NoteRefusal::EditNotAuthor)
    }
}

/// A draft is thrown away by its author only.
pub fn may_discard(author: Uuid, actor: Uuid) -> Result<(), NoteRefusal> {
    if author == actor {
        Ok(())
    } else {
        Err(NoteRefusal::DiscardNotAuthor)
    }
}

/// A signer (already allowed to finalize notes at all) signs their own
/// draft, or co-signs a nurse's; never another provider's draft.
pub fn signing(
    author: Uuid,
    author_role: Option<Role>,
    signer: Uuid,
) -> Result<Signing, NoteRefusal> {
    if author == signer {
        Ok(Signing::Own)
    } else if author_role == Some(Role::Nurse) {
        Ok(Signing::Cosign)
    } else {
        Err(NoteRefusal::SignOthers)
    }
}

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Sealed<'a> {
    pub note: Uuid,
    pub patient: Uuid,
    pub author: Uuid,
    pub signer: Uuid,
    pub title: &'a str,
    pub subjective: &'a str,
    pub objective: &'a str,
    pub assessment: &'a str,
    pub plan: &'a str,
}

fn sha256_of_json(v: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// SHA-256 over a canonical JSON array of what was signed: anyone can
/// recompute it from the stored note and see whether the text changed.
pub fn content_hash(s: &Sealed<'_>) -> String {
    sha256_of_json(&serde_json::json!([
        s.note,
        s.patient,
        s.author,
        s.signer,
        s.title,
        s.subjective,
        s.objective,
        s.assessment,
        s.plan
    ]))
}

/// An addendum's hash chains to the note's signed hash.
pub fn addendum_hash(note: Uuid, author: Uuid, text: &str, note_hash: Option<&str>) -> String {
    sha256_of_json(&serde_json::json!([note, author, text, note_hash]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid) {
        (Uuid::from_u128(1), Uuid::from_u128(2))
    }

    #[test]
    fn only_the_author_edits_or_discards() {
        let (a, b) = ids();
        assert_eq!(may_edit(a, a), Ok(()));
        assert_eq!(may_edit(a, b), Err(NoteRefusal::EditNotAuthor));
        assert_eq!(may_discard(a, a), Ok(()));
        assert_eq!(may_discard(a, b), Err(NoteRefusal::DiscardNotAuthor));
    }

    #[test]
    fn providers_cosign_nurses_only() {
        let (a, b) = ids();
        assert_eq!(signing(a, Some(Role::Provider), a), Ok(Signing::Own));
        assert_eq!(signing(a, Some(Role::Nurse), b), Ok(Signing::Cosign));
        assert_eq!(
            signing(a, Some(Role::Provider), b),
            Err(NoteRefusal::SignOthers)
        );
        assert_eq!(signing(a, None, b), Err(NoteRefusal::SignOthers));
        assert_eq!(
            signing(a, Some(Role::Staff), b),
            Err(NoteRefusal::SignOthers)
        );
    }

    #[test]
    fn the_hash_changes_with_any_signed_field() {
        let (a, b) = ids();
        let base = Sealed {
            note: a,
            patient: b,
            author: a,
            signer: a,
            title: "Visit",
            subjective: "s",
            objective: "o",
            assessment: "a",
            plan: "p",
        };
        let h = content_hash(&base);
        assert_eq!(h.len(), 64);
        assert_eq!(h, content_hash(&base), "deterministic");
        assert_ne!(h, content_hash(&Sealed { plan: "p.", ..base }));
        assert_ne!(h, content_hash(&Sealed { signer: b, ..base }));
        // Field boundaries matter: moving text between sections changes it.
        assert_ne!(
            content_hash(&Sealed {
                subjective: "so",
                objective: "",
                ..base
            }),
            content_hash(&Sealed {
                subjective: "s",
                objective: "o",
                ..base
            })
        );
        assert_ne!(
            addendum_hash(a, a, "x", Some(&h)),
            addendum_hash(a, a, "x", None)
        );
    }
}
