//! Short texts for people, in status messages and Event notes: a list cut to its first items
//! (`a, b, c and 7 more`), and a text cut to a byte limit on a character boundary.

/// `a, b, c and 7 more`.
pub fn summarize_list(items: &[String], max: usize) -> String {
    let shown = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        format!("{shown} and {} more", items.len() - max)
    } else {
        shown
    }
}

/// `text` cut to at most `max` bytes, never inside a character.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_summarized() {
        let items: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        assert_eq!(summarize_list(&items, 3), "p0, p1, p2 and 2 more");
        assert_eq!(summarize_list(&items[..2], 3), "p0, p1");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("hello".into(), 10), "hello");
    }
}
