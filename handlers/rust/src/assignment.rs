//! Which partitions a replica should own, without I/O (`docs/bus-protocol.md`, "Partition
//! ownership"): the live members of a group, sorted byte-wise, take the partitions in turn.
//! Every replica computes the same answer from the same member list, so no one hands partitions
//! out; the leases make the transitions safe while the lists briefly differ.

use std::collections::BTreeSet;

use shardset_contract::bus::Partition;

/// The partitions `me` is assigned among `members` (any order, duplicates ignored), with
/// `partitions` guild partitions: the one at index `i` of [`Partition::all`] goes to
/// `sorted_members[i % n]`. Empty when `me` is not a member.
pub fn assigned(members: &[String], me: &str, partitions: u32) -> BTreeSet<Partition> {
    let sorted: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    let Some(position) = sorted.iter().position(|m| *m == me) else {
        return BTreeSet::new();
    };
    let n = sorted.len();
    Partition::all(partitions)
        .enumerate()
        .filter(|(i, _)| i % n == position)
        .map(|(_, p)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_member_owns_every_partition() {
        let owned = assigned(&names(&["a"]), "a", 4);
        assert_eq!(owned.len(), 5);
        assert!(owned.contains(&Partition::Global));
    }

    #[test]
    fn members_split_the_partitions_in_sorted_order_whatever_the_listing_order() {
        let members = names(&["c", "a", "b"]);
        let a = assigned(&members, "a", 4);
        let b = assigned(&members, "b", 4);
        let c = assigned(&members, "c", 4);
        assert_eq!(
            a,
            BTreeSet::from([Partition::Guild(0), Partition::Guild(3)])
        );
        assert_eq!(b, BTreeSet::from([Partition::Guild(1), Partition::Global]));
        assert_eq!(c, BTreeSet::from([Partition::Guild(2)]));
        // Each partition exactly once.
        let mut all: Vec<Partition> = a.into_iter().chain(b).chain(c).collect();
        all.sort();
        assert_eq!(all, Partition::all(4).collect::<Vec<_>>());
    }

    #[test]
    fn a_stranger_or_a_duplicate_listing_changes_nothing() {
        assert!(assigned(&names(&["a", "b"]), "z", 4).is_empty());
        assert_eq!(
            assigned(&names(&["a", "b", "a"]), "a", 4),
            assigned(&names(&["a", "b"]), "a", 4)
        );
    }
}
