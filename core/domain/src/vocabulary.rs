//! Closed sets of words — statuses, results, reasons — declared once with
//! their spelling. The store parses them where rows are read (an unknown word
//! is an error, never a default) and the transports render them; nobody else
//! spells them.

/// A word of a closed set, as stored in a text column and sent on the wire.
pub trait Vocabulary: Copy + Sized + 'static {
    /// Every word, in declaration order.
    const ALL: &'static [Self];

    fn as_str(self) -> &'static str;

    fn parse(value: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|word| word.as_str() == value)
    }
}

/// Declares an enum whose variants each have one spelling:
/// `vocabulary! { pub enum Colour { Red = "red", Blue = "blue" } }`.
/// Inherent `as_str`/`parse` (so callers need no trait import), `ALL`,
/// `Display`, and [`Vocabulary`].
#[macro_export]
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(value: &str) -> Option<$name> {
                match value {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl $crate::vocabulary::Vocabulary for $name {
            const ALL: &'static [$name] = $name::ALL;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn parse(value: &str) -> Option<$name> {
                $name::parse(value)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Vocabulary;

    crate::vocabulary! {
        enum Colour { Red = "red", DeepBlue = "deep_blue" }
    }

    #[test]
    fn every_word_round_trips_and_nothing_else_parses() {
        for colour in Colour::ALL {
            assert_eq!(Colour::parse(colour.as_str()), Some(*colour));
            assert_eq!(<Colour as Vocabulary>::parse(&colour.to_string()), Some(*colour));
        }
        assert_eq!(Colour::parse("Red"), None, "spelling is exact");
        assert_eq!(Colour::parse(""), None);
    }
}
