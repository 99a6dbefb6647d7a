//! One shape for every set of bit flags in the crate ([`MsgFlags`] on the
//! wire, [`SendFlags`] for the host): a transparent integer newtype with
//! named constants, `EMPTY` and `ALL`, `contains`, `is_empty`, `bits`,
//! `from_bits` (refusing unknown bits), `|`, `|=` and `&`.
//!
//! [`MsgFlags`]: crate::wire::MsgFlags
//! [`SendFlags`]: crate::rep::SendFlags

/// Declares a bit-flags type. See the module docs. A type the crate keeps
/// private without the `testing` feature (`MsgFlags`) need not use every
/// method: those the crate itself may not call say so.
macro_rules! bit_flags {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($int:ty);
        $(
            $(#[$fmeta:meta])*
            const $flag:ident = $value:expr;
        )+
    ) => {
        $(#[$meta])*
        #[derive(Copy, Clone, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub $int);

        impl $name {
            $(
                $(#[$fmeta])*
                pub const $flag: $name = $name($value);
            )+
            /// No flag set.
            pub const EMPTY: $name = $name(0);
            /// Every flag this version defines.
            pub const ALL: $name = $name(0 $(| $value)+);

            /// True if every bit of `other` is set in `self`.
            #[inline]
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// True if no bit is set.
            #[inline]
            #[cfg_attr(not(feature = "testing"), allow(dead_code))]
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }

            /// The raw bits.
            #[inline]
            #[cfg_attr(not(feature = "testing"), allow(dead_code))]
            pub const fn bits(self) -> $int {
                self.0
            }

            /// The flags of `bits`, or `None` if a bit this version does not define is set.
            #[inline]
            #[cfg_attr(not(feature = "testing"), allow(dead_code))]
            pub const fn from_bits(bits: $int) -> Option<$name> {
                if bits & !Self::ALL.0 == 0 {
                    Some($name(bits))
                } else {
                    None
                }
            }
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            #[inline]
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }

        impl std::ops::BitOrAssign for $name {
            #[inline]
            fn bitor_assign(&mut self, rhs: $name) {
                self.0 |= rhs.0;
            }
        }

        impl std::ops::BitAnd for $name {
            type Output = $name;
            #[inline]
            fn bitand(self, rhs: $name) -> $name {
                $name(self.0 & rhs.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut first = true;
                write!(f, "{}(", stringify!($name))?;
                $(
                    if self.contains($name::$flag) {
                        if !first {
                            f.write_str(" | ")?;
                        }
                        first = false;
                        f.write_str(stringify!($flag))?;
                    }
                )+
                let unknown = self.0 & !Self::ALL.0;
                if unknown != 0 {
                    if !first {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{unknown:#x}")?;
                }
                f.write_str(")")
            }
        }
    };
}

pub(crate) use bit_flags;

#[cfg(test)]
mod tests {
    bit_flags! {
        /// Test flags.
        pub struct T(u8);
        /// A.
        const A = 0x1;
        /// B.
        const B = 0x4;
    }

    #[test]
    fn the_shape_behaves_as_a_set_of_bits() {
        assert_eq!(T::ALL, T(0x5));
        assert_eq!(T::B.bits(), 0x4);
        assert!(T::EMPTY.is_empty());
        assert!((T::A | T::B).contains(T::B));
        assert!(!T::A.contains(T::A | T::B));
        assert_eq!(T::from_bits(0x2), None, "unknown bits are refused");
        assert_eq!(T::from_bits(0x4), Some(T::B));
        assert_eq!((T::A | T::B) & T::B, T::B);
        assert_eq!(format!("{:?}", T::A | T::B), "T(A | B)");
        assert_eq!(format!("{:?}", T(0x3)), "T(A | 0x2)");
    }
}
