//! Identifiers and plain records shared by every layer, and [`ErrorChain`] for their errors;
//! imports nothing else of the crate.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;

/// A user's id (`user.uid`): the `UID` of every certificate of the user, their managers and agents.
///
/// Frozen: a newtype over the 1.2 column's integer; the inner value is public on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "store", derive(diesel_derive_newtype::DieselNewType))]
pub struct UserId(pub i32);

/// An application's id (`application.aid`).
///
/// Frozen: a newtype over the 1.2 column's integer; the inner value is public on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "store", derive(diesel_derive_newtype::DieselNewType))]
pub struct AppId(pub i32);

/// A service's id (`service.sid`): the `serviceLocator` of its manager's and agents' certificates.
///
/// Frozen: a newtype over the 1.2 column's integer; the inner value is public on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "store", derive(diesel_derive_newtype::DieselNewType))]
pub struct ServiceId(pub i32);

/// Credit units (1 credit is about one VM-hour); never negative in the store.
///
/// Frozen: a newtype over the 1.2 column's integer; the inner value is public on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "store", derive(diesel_derive_newtype::DieselNewType))]
pub struct Credit(pub i64);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(UserId, AppId, ServiceId, Credit);

/// An operator's change of a user's credit (`director user credit`): `+N` adds, `-N` takes
/// away, `=N` sets; `N` is a non-negative integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CreditChange {
    /// Adds this much (`+N`).
    Add(Credit),
    /// Takes this much away (`-N`).
    Subtract(Credit),
    /// Sets the credit to this (`=N`).
    Set(Credit),
}

impl CreditChange {
    /// The credit after this change of `credit`; `None` below zero or past `i64::MAX`.
    pub fn apply(self, credit: Credit) -> Option<Credit> {
        let after = match self {
            CreditChange::Add(amount) => credit.0.checked_add(amount.0)?,
            CreditChange::Subtract(amount) => credit.0.checked_sub(amount.0)?,
            CreditChange::Set(value) => value.0,
        };
        (after >= 0).then_some(Credit(after))
    }
}

impl fmt::Display for CreditChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreditChange::Add(amount) => write!(f, "+{amount}"),
            CreditChange::Subtract(amount) => write!(f, "-{amount}"),
            CreditChange::Set(value) => write!(f, "={value}"),
        }
    }
}

/// A text that is not a [`CreditChange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("{0:?}: expected +N (add), -N (take away) or =N (set), N a non-negative integer")]
pub struct InvalidCreditChange(pub String);

impl FromStr for CreditChange {
    type Err = InvalidCreditChange;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCreditChange(text.to_owned());
        let mut chars = text.chars();
        let op = chars.next().ok_or_else(invalid)?;
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let amount = Credit(digits.parse().map_err(|_| invalid())?);
        match op {
            '+' => Ok(CreditChange::Add(amount)),
            '-' => Ok(CreditChange::Subtract(amount)),
            '=' => Ok(CreditChange::Set(amount)),
            _ => Err(invalid()),
        }
    }
}

/// A credit charge's id: 128 random bits, as 32 lowercase hexadecimal digits. Given when a
/// manager's charge is first attempted and kept through its retries, its deferral and its
/// replays, so that the store applies it once (`credit_charge` table).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChargeId(String);

impl ChargeId {
    /// A new random id.
    pub fn random() -> ChargeId {
        ChargeId(format!("{:032x}", rand::random::<u128>()))
    }

    /// The id as written: 32 lowercase hexadecimal digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChargeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Not 32 lowercase hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a charge id (32 lowercase hexadecimal digits)")]
#[non_exhaustive]
pub struct BadChargeId;

impl FromStr for ChargeId {
    type Err = BadChargeId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(ChargeId(text.to_owned()))
        } else {
            Err(BadChargeId)
        }
    }
}

/// The `role` attribute (OID 2.5.4.72) of a ConPaaS certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The director itself (and the PHP frontend, which uses the director's certificate).
    Frontend,
    /// A user's client certificate, from `/getcerts`.
    User,
    /// A manager VM's certificate, issued when its service starts.
    Manager,
    /// An agent VM's certificate, signed at `/ca/get_cert.php` for a manager.
    Agent,
}

impl Role {
    /// The attribute value as written into certificates (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Frontend => "frontend",
            Role::User => "user",
            Role::Manager => "manager",
            Role::Agent => "agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not one of the known names of an enumeration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("unknown {what}: {value:?}")]
pub struct UnknownName {
    /// What kind of name was expected.
    pub what: &'static str,
    /// The text that was given.
    pub value: String,
}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "frontend" => Ok(Role::Frontend),
            "user" => Ok(Role::User),
            "manager" => Ok(Role::Manager),
            "agent" => Ok(Role::Agent),
            _ => Err(UnknownName {
                what: "role",
                value: s.to_owned(),
            }),
        }
    }
}

/// The service types ConPaaS 1.2 accepts at `/start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceType {
    /// PHP web hosting.
    Php,
    /// Java servlet hosting.
    Java,
    /// MySQL database.
    Mysql,
    /// Scalaris key-value store.
    Scalaris,
    /// Hadoop MapReduce.
    Hadoop,
    /// The example service.
    Helloworld,
    /// XtreemFS file system.
    Xtreemfs,
    /// Selenium testing grid.
    Selenium,
    /// Bag-of-tasks execution.
    Taskfarm,
}

impl ServiceType {
    /// Every type, in the order 1.2 lists them in `/available_services`'s documentation.
    pub const ALL: [ServiceType; 9] = [
        ServiceType::Php,
        ServiceType::Java,
        ServiceType::Mysql,
        ServiceType::Scalaris,
        ServiceType::Hadoop,
        ServiceType::Helloworld,
        ServiceType::Xtreemfs,
        ServiceType::Selenium,
        ServiceType::Taskfarm,
    ];

    /// The type's name on the wire and in the `service.type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Php => "php",
            ServiceType::Java => "java",
            ServiceType::Mysql => "mysql",
            ServiceType::Scalaris => "scalaris",
            ServiceType::Hadoop => "hadoop",
            ServiceType::Helloworld => "helloworld",
            ServiceType::Xtreemfs => "xtreemfs",
            ServiceType::Selenium => "selenium",
            ServiceType::Taskfarm => "taskfarm",
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "service type",
                value: s.to_owned(),
            })
    }
}

/// A user account as the director sees it (the `user` table, without the password hash).
/// Read from the store; fields may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// Primary key.
    pub uid: UserId,
    /// Login name, also the CN of the user's certificate.
    pub username: String,
    /// First name.
    pub fname: Option<String>,
    /// Last name.
    pub lname: Option<String>,
    /// E-mail, also the emailAddress of the user's certificate.
    pub email: Option<String>,
    /// Free text.
    pub affiliation: Option<String>,
    /// Remaining credit.
    pub credit: Credit,
    /// Creation time, UTC (naive local time in rows 1.2 wrote).
    pub created: Option<NaiveDateTime>,
    /// When the operator disabled the account (UTC); `None` while it is enabled. A disabled
    /// user cannot log in, get certificates or use their user certificates; their services
    /// keep running and are charged as before.
    pub disabled: Option<NaiveDateTime>,
}

impl User {
    /// Whether the operator disabled the account.
    pub fn is_disabled(&self) -> bool {
        self.disabled.is_some()
    }
}

/// An application: a named group of a user's services sharing one VPN. Read from the store;
/// fields may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Application {
    /// Primary key.
    pub aid: AppId,
    /// Display name.
    pub name: Option<String>,
    /// Owner.
    pub user_id: UserId,
}

/// A service: one manager VM and whatever agents it runs (the `service` table). Read from the
/// store; fields may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Service {
    /// Primary key.
    pub sid: ServiceId,
    /// Display name.
    pub name: Option<String>,
    /// Service type name (text, as stored).
    pub service_type: Option<String>,
    /// Always `INIT` in the director's database.
    pub state: Option<String>,
    /// Creation time, UTC (naive local time in rows 1.2 wrote).
    pub created: Option<NaiveDateTime>,
    /// Public IP address of the manager VM; `None` while it is being created.
    pub manager: Option<String>,
    /// The cloud's id of the manager VM; `None` while it is being created.
    pub vmid: Option<String>,
    /// The cloud's name (`iaas` for the default cloud); `None` while being created.
    pub cloud: Option<String>,
    /// VPN subnet in CIDR form.
    pub subnet: Option<String>,
    /// Owner.
    pub user_id: UserId,
    /// Containing application.
    pub application_id: AppId,
    /// Where the service's VM is in its lifecycle (not part of 1.2's answers).
    pub lifecycle: Lifecycle,
}

/// A service row's place in its manager VM's lifecycle. Every change of it is one conditional
/// write on the expected value, so exactly one actor owns each transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lifecycle {
    /// The row exists and its VM is being created (none recorded yet).
    Starting,
    /// The start completed: the row records its VM.
    Running,
    /// A stop owns the row: its VM is being terminated; the row goes once the cloud confirms
    /// it gone. The start is not refunded (the service ran).
    Stopping,
    /// A start that failed, was interrupted or was stopped before it completed: every VM under
    /// its client token is being terminated; the row goes, and the start is refunded, once
    /// the clouds confirm none is left.
    Undoing,
}

impl Lifecycle {
    /// The stored text: `starting`, `running`, `stopping`, `undoing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Starting => "starting",
            Lifecycle::Running => "running",
            Lifecycle::Stopping => "stopping",
            Lifecycle::Undoing => "undoing",
        }
    }

    /// The stored text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<Lifecycle> {
        Some(match text {
            "starting" => Lifecycle::Starting,
            "running" => Lifecycle::Running,
            "stopping" => Lifecycle::Stopping,
            "undoing" => Lifecycle::Undoing,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Python's `int()` of a request value, as 1.2 parsed numbers: surrounding whitespace and one
/// sign allowed, then ASCII digits only.
pub fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An error and its causes on one line, `outer: cause: cause`, as `anyhow`'s `{:#}` shows them.
///
/// The errors of this crate keep their cause out of their own message and give it as
/// [`source`](std::error::Error::source) (so that a report walking the chain says each thing
/// once): where one message must say everything, in a log field or a text kept for later,
/// display the chain. A cause whose text already ends the message (some other crates' errors
/// repeat their source) is not repeated.
///
/// Frozen: a display adapter over one borrowed error, built as `ErrorChain(&error)`.
///
/// ```
/// use conpaas_core::error::ErrorChain;
///
/// let error = conpaas_core::ca::Error::Read {
///     path: "/etc/cpsdirector/certs/ca_key.pem".into(),
///     source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
/// };
/// assert_eq!(
///     ErrorChain(&error).to_string(),
///     "cannot read /etc/cpsdirector/certs/ca_key.pem: permission denied"
/// );
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Option<CreditChange>) {
        assert_eq!(text.parse::<CreditChange>().ok(), expect, "{text:?}");
        if let Some(change) = expect {
            assert_eq!(change.to_string().parse::<CreditChange>(), Ok(change));
        }
    }

    #[test]
    fn credit_changes_parse_and_apply() {
        check("+5", Some(CreditChange::Add(Credit(5))));
        check("-0", Some(CreditChange::Subtract(Credit(0))));
        check("=007", Some(CreditChange::Set(Credit(7))));
        for bad in [
            "",
            "5",
            "+",
            "=-1",
            "+-1",
            "++1",
            "+ 1",
            "+1.5",
            "+1e3",
            "*2",
            "-x",
            "+99999999999999999999",
            "+\u{661}",
        ] {
            check(bad, None);
        }
        let apply = |change: &str, credit: i64| {
            change
                .parse::<CreditChange>()
                .unwrap()
                .apply(Credit(credit))
                .map(|c| c.0)
        };
        assert_eq!(apply("+5", 10), Some(15));
        assert_eq!(apply("-10", 10), Some(0));
        assert_eq!(apply("-11", 10), None, "never below zero");
        assert_eq!(apply("=3", 10), Some(3));
        assert_eq!(apply("+1", i64::MAX), None, "no overflow");
    }
}
