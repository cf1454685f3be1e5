//! Helpers shared by the integration tests.

/// A fake AWS access key id, distinct per `n` (base32 alphabet, as AWS
/// issues them).
pub fn aws_key(n: u32) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut x = 0x9E37_79B9u64.wrapping_mul(n as u64 + 7) ^ 0x5DEECE66D;
    let tail: String = (0..16)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            A[(x >> 59) as usize] as char
        })
        .collect();
    format!("AKIA{tail}")
}
