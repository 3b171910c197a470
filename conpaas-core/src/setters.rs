//! `setters!`: the chainable setters of the crate's `#[non_exhaustive]` structs, so that each
//! reads the same in rustdoc (`Sets [field](Self::field).`) and none is forgotten.

/// Inside an `impl` block, one `pub fn field(mut self, value) -> Self` per listed field:
///
/// - `field: T` takes a `T`;
/// - `field: into T` takes `impl Into<T>`;
/// - `field: some T` sets an `Option<T>` field from a `T`;
/// - `field: some into T` sets an `Option<T>` field from `impl Into<T>`.
macro_rules! setters {
    () => {};
    ($field:ident: some into $t:ty $(, $($rest:tt)*)?) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        pub fn $field(mut self, value: impl Into<$t>) -> Self {
            self.$field = Some(value.into());
            self
        }
        setters! { $($($rest)*)? }
    };
    ($field:ident: some $t:ty $(, $($rest:tt)*)?) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        pub fn $field(mut self, value: $t) -> Self {
            self.$field = Some(value);
            self
        }
        setters! { $($($rest)*)? }
    };
    ($field:ident: into $t:ty $(, $($rest:tt)*)?) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        pub fn $field(mut self, value: impl Into<$t>) -> Self {
            self.$field = value.into();
            self
        }
        setters! { $($($rest)*)? }
    };
    ($field:ident: $t:ty $(, $($rest:tt)*)?) => {
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        pub fn $field(mut self, value: $t) -> Self {
            self.$field = value;
            self
        }
        setters! { $($($rest)*)? }
    };
}
