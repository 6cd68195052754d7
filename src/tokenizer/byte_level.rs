//! GPT-2's byte ↔ symbol table.
//!
//! Byte-level BPE works on bytes, but a vocabulary file wants printable strings. GPT-2 solves this
//! by giving every byte a visible stand-in character: printable bytes stand for themselves, the
//! rest (space, newline, control bytes, ...) are shifted to code points from U+0100 on. That is why
//! a space shows up as `Ġ` (U+0120) and a newline as `Ċ` (U+010A).

use std::collections::HashMap;
use std::sync::LazyLock;

/// The 256 stand-in characters, indexed by byte value.
static BYTE_TO_CHAR: LazyLock<[char; 256]> = LazyLock::new(|| {
    let is_printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next_shifted = 256u32;
    for byte in 0..=255u8 {
        table[byte as usize] = if is_printable(byte) {
            char::from(byte)
        } else {
            let shifted = char::from_u32(next_shifted).unwrap_or(char::REPLACEMENT_CHARACTER);
            next_shifted += 1;
            shifted
        };
    }
    table
});

static CHAR_TO_BYTE: LazyLock<HashMap<char, u8>> = LazyLock::new(|| {
    (0..=255u8)
        .map(|byte| (BYTE_TO_CHAR[byte as usize], byte))
        .collect()
});

/// The byte a stand-in character represents, if it is one (`'Ġ'` → `b' '`).
pub(crate) fn char_to_byte(symbol: char) -> Option<u8> {
    CHAR_TO_BYTE.get(&symbol).copied()
}

/// All 256 stand-in characters, in code-point order (the order the GPT-2-style trainer uses for
/// the base vocabulary).
pub(crate) fn alphabet_sorted() -> Vec<char> {
    let mut alphabet = BYTE_TO_CHAR.to_vec();
    alphabet.sort_unstable();
    alphabet
}

/// The raw bytes a byte-level token stands for; characters outside the table (which a real
/// byte-level vocabulary never contains) count as their own UTF-8 bytes.
pub(crate) fn token_to_bytes(token: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(token.len());
    for symbol in token.chars() {
        match char_to_byte(symbol) {
            Some(byte) => bytes.push(byte),
            None => bytes.extend_from_slice(symbol.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_gpt2_table() {
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[b'a' as usize], 'a');
        assert_eq!(char_to_byte('Ġ'), Some(b' '));
        assert_eq!(alphabet_sorted().len(), 256);
        assert_eq!(token_to_bytes("Ġcat"), b" cat".to_vec());
    }
}
