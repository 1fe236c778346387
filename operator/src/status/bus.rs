//! The `BusAvailable` condition (only with `spec.bus`): whether the worker pods can publish to
//! the bus, from their status records' `busAccepting` (the pods' `shardset_bus_accepting`). A
//! shard whose pod cannot publish stops reading the gateway (nothing is lost, but its guilds'
//! events wait), so the operator says it in the status and with a Warning Event on the
//! transition (`docs/bus-protocol.md`, "What the publisher must do", step 4). Pure: the I/O is
//! in `reconcile::update_status`. Messages name pods and shards, never the bus URL (it may
//! hold credentials).

use crate::text::summarize_list;

/// The condition type.
pub const BUS_AVAILABLE: &str = "BusAvailable";
/// Its reason while pods cannot publish (also the Warning Event's).
pub const BUS_UNREACHABLE: &str = "BusUnreachable";

/// What the target layout's status records say about the bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusReport {
    /// Shards whose record says whether their pod can publish.
    pub reporting: u32,
    /// Those whose pod cannot: `(shard, pod)`.
    pub unreachable: Vec<(u32, String)>,
}

/// `(status, reason, message)` of `BusAvailable`; `None` without a bus (no condition).
pub fn condition(bus: Option<&BusReport>) -> Option<(&'static str, &'static str, String)> {
    let bus = bus?;
    if !bus.unreachable.is_empty() {
        let mut pods: Vec<String> = bus.unreachable.iter().map(|(_, p)| p.clone()).collect();
        pods.sort();
        pods.dedup();
        let shards = bus.unreachable.len();
        return Some((
            "False",
            BUS_UNREACHABLE,
            format!(
                "{shards} {} in {} {} cannot publish to the bus ({}): they stop reading the gateway until it accepts again",
                plural(shards, "shard", "shards"),
                pods.len(),
                plural(pods.len(), "pod", "pods"),
                summarize_list(&pods, 3),
            ),
        ));
    }
    if bus.reporting == 0 {
        return Some((
            "Unknown",
            "NoReports",
            "no shard has reported whether it can publish yet".to_owned(),
        ));
    }
    Some((
        "True",
        "Publishing",
        format!(
            "{} {} publish to the bus",
            bus.reporting,
            plural(bus.reporting as usize, "shard", "shards")
        ),
    ))
}

/// The Event of a change of `BusAvailable` from `before` to `after` (each `(status, message)`):
/// `(warning, reason, note)`. A Warning when it turns False, a Normal one when it is True again
/// after False; nothing otherwise.
pub fn transition(
    before: Option<(&str, &str)>,
    after: Option<(&str, &str)>,
) -> Option<(bool, &'static str, String)> {
    let was_false = before.is_some_and(|(status, _)| status == "False");
    match after {
        Some(("False", message)) if !was_false => Some((true, BUS_UNREACHABLE, message.to_owned())),
        Some(("True", message)) if was_false => Some((
            false,
            BUS_AVAILABLE,
            format!("the bus accepts publishes again: {message}"),
        )),
        _ => None,
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(reporting: u32, unreachable: &[(u32, &str)]) -> BusReport {
        BusReport {
            reporting,
            unreachable: unreachable
                .iter()
                .map(|(s, p)| (*s, (*p).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn no_bus_no_condition() {
        assert_eq!(condition(None), None);
    }

    #[test]
    fn pods_that_cannot_publish_make_it_false_naming_them_and_counting_shards() {
        let (status, reason, message) = condition(Some(&report(
            4,
            &[(0, "bot-4-0-1"), (1, "bot-4-0-1"), (3, "bot-4-2-3")],
        )))
        .expect("a condition");
        assert_eq!((status, reason), ("False", "BusUnreachable"));
        assert_eq!(
            message,
            "3 shards in 2 pods cannot publish to the bus (bot-4-0-1, bot-4-2-3): they stop reading the gateway until it accepts again"
        );
        let (_, _, one) = condition(Some(&report(1, &[(0, "p")]))).expect("a condition");
        assert!(one.starts_with("1 shard in 1 pod cannot"), "{one}");
    }

    #[test]
    fn every_shard_publishing_is_true_and_no_reports_unknown() {
        let (status, reason, message) = condition(Some(&report(8, &[]))).expect("a condition");
        assert_eq!(
            (status, reason, message.as_str()),
            ("True", "Publishing", "8 shards publish to the bus")
        );
        let (status, reason, _) = condition(Some(&report(0, &[]))).expect("a condition");
        assert_eq!((status, reason), ("Unknown", "NoReports"));
    }

    #[test]
    fn events_on_turning_false_and_on_recovering_only() {
        let down = Some(("False", "2 shards in 1 pod cannot publish"));
        let up = Some(("True", "2 shards publish to the bus"));
        assert_eq!(
            transition(up, down),
            Some((
                true,
                "BusUnreachable",
                "2 shards in 1 pod cannot publish".to_owned()
            ))
        );
        assert_eq!(transition(None, down).map(|e| e.1), Some("BusUnreachable"));
        assert_eq!(transition(down, down), None, "no Event while it stays down");
        assert_eq!(
            transition(down, up),
            Some((
                false,
                "BusAvailable",
                "the bus accepts publishes again: 2 shards publish to the bus".to_owned()
            ))
        );
        assert_eq!(transition(up, up), None);
        assert_eq!(transition(None, up), None, "first report: no Event");
        assert_eq!(transition(Some(("Unknown", "")), up), None);
    }
}
