//! Where a scenario's phrases lie in a text, as a browser indexes it: the
//! marks of report.html's inspector, found by the matching recall uses.

use super::Phrases;

/// [`fold`], with where each byte of the folded text came from: the UTF-16
/// offsets (start, end) of the original character, as a browser indexes
/// a string. A phrase found in the folded text at bytes `a..b` covers the
/// original's UTF-16 range `map[a].0..map[b - 1].1`.
pub fn fold_mapped(text: &str) -> (String, Vec<(u32, u32)>) {
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len());
    let mut space: Option<(u32, u32)> = None;
    let mut at = 0u32;
    for c in text.chars() {
        let next = at + c.len_utf16() as u32;
        if c.is_whitespace() {
            if !out.is_empty() && space.is_none() {
                space = Some((at, next));
            }
        } else {
            if let Some(s) = space.take() {
                out.push(' ');
                map.push(s);
            }
            out.extend(c.to_lowercase());
            map.resize(out.len(), (at, next));
        }
        at = next;
    }
    (out, map)
}

/// Where each of `phrases` occurs in `text` (every occurrence, overlapping
/// ones included), matched as recall matches them (on the folded text):
/// (UTF-16 start, UTF-16 end, phrase index), by start.
pub fn phrase_spans(text: &str, phrases: &Phrases) -> Vec<(u32, u32, u32)> {
    if phrases.iter().len() == 0 {
        return Vec::new();
    }
    let (folded, map) = fold_mapped(text);
    let mut spans: Vec<(u32, u32, u32)> = phrases
        .finder()
        .find_overlapping_iter(&folded)
        .filter(|m| m.end() > m.start())
        .map(|m| (map[m.start()].0, map[m.end() - 1].1, m.pattern().as_u32()))
        .collect();
    spans.sort_unstable();
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::fold;

    #[test]
    fn fold_mapped_folds_as_fold_and_maps_back_to_utf16() {
        for text in [
            "",
            "   ",
            "  Cabin\t WiFi\n\npassword  ",
            "İstanbul ÄÖ straße\u{a0}\u{a0}x",
            "🙂 Wi\u{0b}Fi 🙂",
        ] {
            let (folded, map) = fold_mapped(text);
            assert_eq!(folded, fold(text), "{text:?}");
            assert_eq!(map.len(), folded.len(), "{text:?}");
        }
        // Two phrases, one occurring twice, one across collapsed spaces, after a
        // character of two UTF-16 units.
        let phrases = Phrases::new(vec![fold("wifi password"), fold("pelican")]);
        let text = "🙂 The WiFi   Password is PELICAN-42; pelican again";
        let utf16: Vec<u16> = text.encode_utf16().collect();
        let spans = phrase_spans(text, &phrases);
        let shown: Vec<(String, u32)> = spans
            .iter()
            .map(|&(a, b, p)| {
                (
                    String::from_utf16(&utf16[a as usize..b as usize]).unwrap(),
                    p,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("WiFi   Password".to_string(), 0),
                ("PELICAN".to_string(), 1),
                ("pelican".to_string(), 1)
            ]
        );
        assert!(phrase_spans(text, &Phrases::new(Vec::<String>::new())).is_empty());
    }
}
