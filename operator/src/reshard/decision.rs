//! What one reshard decision reads and what it says: the [`Inputs`] (spec, roles document,
//! layouts, budget, Redis time), the [`Decision`] (which layout's pods to keep and create, which
//! layouts to delete, the next roles document), the [`Phase`] that names the step in the status,
//! and [`next_doc`], the roles document after the one read.

use shardset_contract::LayoutRoles;

use crate::crd::ReshardStrategy;
use crate::reshard::views::LayoutView;

/// Everything one decision needs.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The shard total the spec asks for.
    pub target: u32,
    pub strategy: ReshardStrategy,
    /// `P:active-layout` as read (None: unset).
    pub doc: Option<&'a LayoutRoles>,
    /// Every layout with owned pods, and the target's (possibly without pods).
    pub layouts: &'a [LayoutView],
    /// Session starts remaining (the lower of Discord's fresh answer and `P:budget`).
    pub remaining: Option<u32>,
    /// `spec.identifyReserve`.
    pub reserve: u32,
    /// Redis time, ms.
    pub now_ms: u64,
    /// `W`, ms.
    pub window_ms: u64,
}

/// Where a reshard stands; the `Resharding` condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One layout serves; nothing to do.
    Idle,
    /// The budget cannot pay for the new layout: nothing started.
    InsufficientSessionStarts,
    /// The budget is not known yet (Discord not read): nothing started.
    SessionStartsUnknown,
    /// BlueGreen: the new layout's pods start in standby.
    StartingNewLayout,
    /// BlueGreen: the old layout claims events (after back-filling).
    OldLayoutClaiming,
    /// BlueGreen: both layouts claim.
    BothLayoutsClaiming,
    /// BlueGreen: the old layout is retired, the new one claims.
    RetiringOldLayout,
    /// The old layout's pods are being deleted.
    DeletingOldLayout,
    /// A hand-over to a layout the spec no longer wants is being undone.
    Abandoning,
    /// Recreate: the old layout is retired and deleted before the new one starts.
    StoppingOldLayout,
    /// The target layout's pods are being created (Recreate's second half, or a first start).
    StartingLayout,
}

impl Phase {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::InsufficientSessionStarts => "InsufficientSessionStarts",
            Self::SessionStartsUnknown => "SessionStartsUnknown",
            Self::StartingNewLayout => "StartingNewLayout",
            Self::OldLayoutClaiming => "OldLayoutClaiming",
            Self::BothLayoutsClaiming => "BothLayoutsClaiming",
            Self::RetiringOldLayout => "RetiringOldLayout",
            Self::DeletingOldLayout => "DeletingOldLayout",
            Self::Abandoning => "Abandoning",
            Self::StoppingOldLayout => "StoppingOldLayout",
            Self::StartingLayout => "StartingLayout",
        }
    }

    /// True while a reshard is under way (`Resharding=True`).
    pub fn in_progress(self) -> bool {
        !matches!(
            self,
            Self::Idle | Self::InsufficientSessionStarts | Self::SessionStartsUnknown
        )
    }

    /// True when the reshard was refused and nothing may start.
    pub fn refused(self) -> bool {
        matches!(
            self,
            Self::InsufficientSessionStarts | Self::SessionStartsUnknown
        )
    }
}

/// The decision of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The layout whose pods the pod plan keeps, creates and rolls: the spec's target, or the
    /// layout a hand-over under way brings in.
    pub layout: u32,
    /// Missing pods of `layout` may be created.
    pub create: bool,
    /// Layouts whose pods may be deleted now: retired, and every running shard acknowledged it.
    pub delete: Vec<String>,
    /// The next roles document, written by compare-and-set against the read one's revision.
    pub write: Option<LayoutRoles>,
    pub phase: Phase,
    /// What is happening or awaited, for a human.
    pub message: String,
    /// The hand-over under way (`from`, `to`), for the status.
    pub handover: Option<(String, String)>,
    /// This decision starts a reshard (its `write` passed the budget check): the caller checks
    /// the budget on a fresh answer from Discord before writing it.
    pub starts: bool,
}

/// The document after `doc`: the next revision, roles of layouts that still matter kept.
pub fn next_doc(doc: Option<&LayoutRoles>) -> LayoutRoles {
    LayoutRoles {
        revision: doc.map_or(0, |d| d.revision) + 1,
        roles: doc.map(|d| d.roles.clone()).unwrap_or_default(),
        ..LayoutRoles::default()
    }
}
