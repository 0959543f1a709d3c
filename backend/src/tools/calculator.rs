//! `calculator {expression}`: arithmetic with + - * / ^, parentheses and unary minus.

use super::Tool;
use async_trait::async_trait;
use serde_json::{json, Value};

#[derive(Debug)]
pub(super) struct Calculator;

#[async_trait]
impl Tool for Calculator {
    fn name(&self) -> &'static str {
        "calculator"
    }

    fn description(&self) -> &'static str {
        "Evaluates an arithmetic expression: numbers, + - * / ^ and parentheses."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "For example \"(2+3)*4\"."}
            },
            "required": ["expression"],
            "additionalProperties": false
        })
    }

    async fn call(&self, arguments: &Value) -> Result<String, String> {
        let expression = arguments
            .get("expression")
            .and_then(|e| e.as_str())
            .ok_or("expected {\"expression\": \"...\"}")?;
        evaluate(expression).map(format_number)
    }
}

fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// Evaluates `input`; the error says what was wrong and where.
pub(super) fn evaluate(input: &str) -> Result<f64, String> {
    let mut p = Parser {
        chars: input.chars().filter(|c| !c.is_whitespace()).collect(),
        pos: 0,
        depth: 0,
    };
    if p.chars.is_empty() {
        return Err("empty expression".into());
    }
    let value = p.sum()?;
    if let Some(c) = p.peek() {
        return Err(format!("unexpected {c:?} at position {}", p.pos + 1));
    }
    if value.is_finite() {
        Ok(value)
    } else {
        Err("the result is not a finite number".into())
    }
}

/// Deep nesting is refused rather than allowed to exhaust the stack.
const MAX_DEPTH: u32 = 64;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: u32,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut value = self.product()?;
        loop {
            if self.eat('+') {
                value += self.product()?;
            } else if self.eat('-') {
                value -= self.product()?;
            } else {
                return Ok(value);
            }
        }
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut value = self.power()?;
        loop {
            if self.eat('*') {
                value *= self.power()?;
            } else if self.eat('/') {
                let divisor = self.power()?;
                if divisor == 0.0 {
                    return Err("division by zero".into());
                }
                value /= divisor;
            } else {
                return Ok(value);
            }
        }
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.unary()?;
        if self.eat('^') {
            // Right-associative: 2^3^2 = 2^(3^2).
            let exponent = self.nested(Self::power)?;
            return Ok(base.powf(exponent));
        }
        Ok(base)
    }

    fn unary(&mut self) -> Result<f64, String> {
        if self.eat('-') {
            return Ok(-self.nested(Self::unary)?);
        }
        if self.eat('+') {
            return self.nested(Self::unary);
        }
        self.atom()
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<f64, String>) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("expression nested too deeply".into());
        }
        let value = f(self);
        self.depth -= 1;
        value
    }

    fn atom(&mut self) -> Result<f64, String> {
        if self.eat('(') {
            let value = self.nested(Self::sum)?;
            if !self.eat(')') {
                return Err(format!("expected ')' at position {}", self.pos + 1));
            }
            return Ok(value);
        }
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit() || c == '.') {
            self.pos += 1;
        }
        if start == self.pos {
            return match self.peek() {
                Some(c) => Err(format!("unexpected {c:?} at position {}", self.pos + 1)),
                None => Err("unexpected end of expression".into()),
            };
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse()
            .map_err(|_| format!("invalid number {text:?} at position {}", start + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evaluates_with_precedence_and_associativity() {
        let cases = [
            ("2+3", 5.0),
            ("2 + 3 * 4", 14.0),
            ("(2+3)*4", 20.0),
            ("10/4", 2.5),
            ("2^3^2", 512.0),
            ("-3 + 5", 2.0),
            ("--2", 2.0),
            ("1.5*2", 3.0),
            ("2*-3", -6.0),
        ];
        for (input, want) in cases {
            assert_eq!(evaluate(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn explains_bad_expressions() {
        let cases = [
            ("", "empty expression"),
            ("1/0", "division by zero"),
            ("2+", "unexpected end of expression"),
            ("(1+2", "expected ')' at position 5"),
            ("2$3", "unexpected '$' at position 2"),
            ("1.2.3", "invalid number \"1.2.3\" at position 1"),
            ("10^400", "the result is not a finite number"),
        ];
        for (input, want) in cases {
            assert_eq!(evaluate(input), Err(want.to_string()), "{input}");
        }
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(evaluate(&deep), Err("expression nested too deeply".into()));
    }

    #[test]
    fn whole_numbers_print_without_a_fraction() {
        assert_eq!(format_number(5.0), "5");
        assert_eq!(format_number(2.5), "2.5");
    }

    proptest! {
        #[test]
        fn never_panics(input in "[0-9+*/^().\\- ]{0,40}") {
            let _ = evaluate(&input);
        }

        #[test]
        fn integer_sums_are_exact(a in -1000i64..1000, b in -1000i64..1000) {
            prop_assert_eq!(evaluate(&format!("{a}+({b})")), Ok((a + b) as f64));
        }
    }
}
