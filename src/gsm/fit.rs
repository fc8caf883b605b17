//! Cutting a text to a number of segments (issue 10): alerts are cut,
//! never refused for length, and the note of alerts held back must fit too.

use crate::gsm;

/// What ends a text that was cut.
pub const ELLIPSIS: &str = "...";

/// How far back from the cut a space is looked for, so that a word is not
/// split when a space is near.
const WORD_SLACK: usize = 20;

/// `text` followed by `tail`, within `max_segments`: unchanged when it fits;
/// otherwise `text` is cut (at a space when one is near the cut, trailing
/// spaces dropped) and followed by [`ELLIPSIS`], then `tail`. Cutting never
/// adds a character outside GSM-7, so a GSM-7 text stays GSM-7. When even
/// `ELLIPSIS` and `tail` do not fit, `tail` itself is cut.
pub fn fit(text: &str, tail: &str, max_segments: u32) -> String {
    let whole = format!("{text}{tail}");
    if gsm::segments(&whole).count <= max_segments {
        return whole;
    }
    let fits =
        |prefix: &str| gsm::segments(&format!("{prefix}{ELLIPSIS}{tail}")).count <= max_segments;
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    // The segment count only grows with the prefix: the longest prefix
    // that fits is found by bisection.
    let (mut lo, mut hi) = (0usize, bounds.len() - 1);
    if !fits("") {
        return fit(tail, "", max_segments).trim_start().to_owned();
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(&text[..bounds[mid]]) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut prefix = &text[..bounds[lo]];
    if let Some(space) = prefix.rfind(char::is_whitespace)
        && prefix.len() - space <= WORD_SLACK
        && space > 0
        && !text[prefix.len()..].starts_with(char::is_whitespace)
    {
        prefix = &prefix[..space];
    }
    format!("{}{ELLIPSIS}{tail}", prefix.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_that_fits_is_unchanged() {
        assert_eq!(fit("disk full on db1", "", 1), "disk full on db1");
        let exact = "a".repeat(160);
        assert_eq!(fit(&exact, "", 1), exact);
        assert_eq!(fit("x", " (+2)", 1), "x (+2)");
    }

    #[test]
    fn a_long_gsm_text_is_cut_to_the_limit_and_stays_gsm() {
        let long = "word ".repeat(100);
        for max in 1..=3 {
            let cut = fit(&long, "", max);
            let s = gsm::segments(&cut);
            assert_eq!(s.count, max, "{cut}");
            assert_eq!(s.encoding, gsm::Encoding::Gsm7);
            assert!(cut.ends_with("word..."), "cut at a word: {cut}");
            assert!(s.units > 100 * max as usize, "uses the room: {cut}");
        }
        let one = fit(&"a".repeat(200), "", 1);
        assert_eq!(one.len(), 160);
        assert!(one.ends_with("a..."));
    }

    #[test]
    fn a_ucs2_text_is_cut_in_ucs2_units() {
        let long = "€漢".repeat(100);
        let cut = fit(&long, "", 1);
        assert!(gsm::segments(&cut).count == 1);
        assert_eq!(cut.chars().count(), 70);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn the_tail_is_kept_whole_and_the_text_cut_for_it() {
        let tail = "\n(+12 similar alerts held back)";
        let cut = fit(&"b".repeat(400), tail, 2);
        assert!(cut.ends_with(&format!("...{tail}")), "{cut}");
        assert_eq!(gsm::segments(&cut).count, 2);
        // A tail longer than the room is cut itself.
        let tiny = fit("text", &"t".repeat(200), 1);
        assert_eq!(gsm::segments(&tiny).count, 1);
        assert!(tiny.ends_with("..."));
    }
}
