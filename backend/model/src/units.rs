//! Quantities people write and read: memory sizes and CPU shares.

/// `"512Mi"`, `"2Gi"`, `"1.5G"`, `"1048576"` → bytes. Binary units (Ki, Mi, Gi, Ti) and decimal
/// ones (K, M, G, T); no unit = bytes. The error says what is expected.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("memory {s:?} must look like \"512Mi\" or \"2Gi\""))?;
    let mult: f64 = match unit.trim() {
        "" => 1.0,
        "K" | "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("unknown memory unit {u:?} in {s:?}: use Ki, Mi, Gi, Ti (or K, M, G, T)")),
    };
    Ok((n * mult).round() as u64)
}

/// `536870912` → `"512 MiB"`, `1610612736` → `"1.5 GiB"`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 { format!("{v} {}", UNITS[u]) } else { format!("{v:.1} {}", UNITS[u]) }
}

/// `500` → `"0.5 CPU"`, `2000` → `"2 CPU"`.
pub fn human_cpu(millis: u32) -> String {
    format!("{} CPU", f64::from(millis) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_round_trips_through_words() {
        assert_eq!(parse_memory("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_memory(" 1.5G "), Ok(1_500_000_000));
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert!(parse_memory("12 parsecs").unwrap_err().contains("use Ki, Mi, Gi"));
        assert!(parse_memory("lots").unwrap_err().contains("must look like"));
        assert_eq!(human_bytes(512 * 1024 * 1024), "512 MiB");
        assert_eq!(human_bytes(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_cpu(250), "0.25 CPU");
    }
}
