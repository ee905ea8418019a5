//! Resource quantities (`500m`, `1Gi`, `1e3`): parsing, exact comparison and
//! upstream's canonical form.

/// The regular expression upstream quotes when a quantity cannot be parsed.
pub const QUANTITY_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A parsed quantity, held exactly in thousandths (rounded up, as the
/// apiserver rounds stored values up to milli-units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    milli: i128,
    format: Format,
}

const DECIMAL_SUFFIXES: &[(&str, i32)] = &[
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY_SUFFIXES: &[(&str, u32)] = &[
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];

impl Quantity {
    /// Parses a quantity string; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, suffix) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let digits: String = format!("{int_part}{frac_part}");
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let mut exp10 = -i32::try_from(frac_part.len()).ok()?;
        let format = if let Some((_, power)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            mantissa = mantissa.checked_mul(1024i128.checked_pow(*power)?)?;
            Format::BinarySi
        } else if let Some((_, e)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            exp10 += e;
            Format::DecimalSi
        } else if let Some(exponent) = suffix.strip_prefix(['e', 'E']) {
            exp10 += exponent.parse::<i32>().ok()?;
            Format::DecimalExponent
        } else {
            return None;
        };
        // Scale to thousandths, rounding up (away from zero, like upstream RoundUp).
        let shift = exp10 + 3;
        let magnitude = if shift >= 0 {
            mantissa.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?
        } else {
            let divisor = 10i128
                .checked_pow(u32::try_from(-shift).ok()?)
                .unwrap_or(i128::MAX);
            (mantissa + divisor - 1) / divisor
        };
        Some(Self {
            milli: if negative { -magnitude } else { magnitude },
            format,
        })
    }

    pub fn milli_value(&self) -> i128 {
        self.milli
    }

    /// The value in whole units, rounded up (what `resourceFieldRef` exposes).
    pub fn value(&self) -> i128 {
        if self.milli >= 0 {
            (self.milli + 999) / 1000
        } else {
            self.milli / 1000
        }
    }

    /// The sum, in this quantity's format (Go's `Quantity.Add`).
    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity {
            milli: self.milli + other.milli,
            format: self.format,
        }
    }

    pub fn is_negative(&self) -> bool {
        self.milli < 0
    }

    /// Upstream's canonical string: `0.5` → `500m`, `1024Mi` → `1Gi`, `1000` → `1k`.
    pub fn canonical(&self) -> String {
        if self.milli == 0 {
            return "0".to_string();
        }
        if self.format == Format::BinarySi
            && self.milli % 1000 == 0
            && self.milli.abs() >= 1024 * 1000
        {
            let mut units = self.milli / 1000;
            let mut power = 0;
            while power < BINARY_SUFFIXES.len() && units % 1024 == 0 {
                units /= 1024;
                power += 1;
            }
            let suffix = if power == 0 {
                ""
            } else {
                BINARY_SUFFIXES[power - 1].0
            };
            return format!("{units}{suffix}");
        }
        let mut mantissa = self.milli;
        let mut exp10 = -3;
        while mantissa % 1000 == 0 && exp10 < 18 {
            mantissa /= 1000;
            exp10 += 3;
        }
        if self.format == Format::DecimalExponent {
            return if exp10 == 0 {
                format!("{mantissa}")
            } else {
                format!("{mantissa}e{exp10}")
            };
        }
        let suffix = DECIMAL_SUFFIXES
            .iter()
            .find(|(_, e)| *e == exp10)
            .map(|(s, _)| *s)
            .unwrap_or("");
        format!("{mantissa}{suffix}")
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.milli.cmp(&other.milli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        Quantity::parse(text)
            .map(|q| q.canonical())
            .unwrap_or_else(|| "<invalid>".to_string())
    }

    #[test]
    fn canonical_forms_match_upstream() {
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("100m"), "100m");
        assert_eq!(canon("1"), "1");
        assert_eq!(canon("1000"), "1k");
        assert_eq!(canon("200M"), "200M");
        assert_eq!(canon("1G"), "1G");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1536Mi"), "1536Mi");
        assert_eq!(canon("0.0001"), "1m");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("128974848"), "128974848");
        assert_eq!(canon("129e6"), "129e6");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("1Gx"), "<invalid>");
        assert_eq!(canon("abc"), "<invalid>");
    }

    #[test]
    fn values_compare_exactly_and_round_up() {
        let limit = Quantity::parse("1250m");
        assert_eq!(limit.map(|q| q.value()), Some(2));
        assert_eq!(Quantity::parse("32Mi").map(|q| q.value()), Some(33_554_432));
        assert!(Quantity::parse("1Gi") > Quantity::parse("1G"));
        assert!(Quantity::parse("-1").is_some_and(|q| q.is_negative()));
    }
}
