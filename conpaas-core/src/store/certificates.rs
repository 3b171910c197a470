//! The `issued_certificate` table: every certificate the CA issues, by serial.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::Error;
use super::conn::DbConnection;
use super::rows::{CertificateRow, now_utc};
use super::schema::issued_certificate;
use crate::model::{Role, ServiceId, UserId};

/// A certificate to record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewCertificate {
    /// The serial number in hexadecimal (stored lowercase).
    pub serial: String,
    /// The certificate's role attribute.
    pub role: Role,
    /// The `UID` attribute, if any.
    pub uid: Option<UserId>,
    /// The `serviceLocator` attribute, if any (0 for user certificates in 1.2).
    pub sid: Option<ServiceId>,
    /// Start of validity, UTC.
    pub not_before: NaiveDateTime,
    /// End of validity, UTC.
    pub not_after: NaiveDateTime,
}

impl NewCertificate {
    /// The certificate `serial` (hexadecimal) of `role`, valid from `not_before` to
    /// `not_after`, without `UID` or `serviceLocator` (set them with the setters).
    pub fn new(
        serial: impl Into<String>,
        role: Role,
        not_before: NaiveDateTime,
        not_after: NaiveDateTime,
    ) -> Self {
        NewCertificate {
            serial: serial.into(),
            role,
            uid: None,
            sid: None,
            not_before,
            not_after,
        }
    }

    setters! {
        uid: some UserId,
        sid: some ServiceId,
    }
}

/// A recorded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedCertificate {
    /// Lowercase hexadecimal serial number.
    pub serial: String,
    /// The role attribute as stored.
    pub role: String,
    /// The `UID` attribute, if any.
    pub uid: Option<UserId>,
    /// The `serviceLocator` attribute, if any.
    pub sid: Option<ServiceId>,
    /// Start of validity, UTC.
    pub not_before: NaiveDateTime,
    /// End of validity, UTC.
    pub not_after: NaiveDateTime,
    /// When it was recorded, UTC.
    pub created: NaiveDateTime,
}

impl From<CertificateRow> for IssuedCertificate {
    fn from(row: CertificateRow) -> IssuedCertificate {
        IssuedCertificate {
            serial: row.serial,
            role: row.role,
            uid: row.uid,
            sid: row.sid,
            not_before: row.not_before,
            not_after: row.not_after,
            created: row.created,
        }
    }
}

/// The canonical text of a serial: lowercase hex, so that one number has one key.
fn canonical_serial(serial: &str) -> Result<String, Error> {
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidSerial(serial.to_owned()));
    }
    Ok(serial.to_ascii_lowercase())
}

/// Records an issued certificate; [`Error::SerialTaken`] if its serial was issued
/// before (the CA then draws another serial).
pub fn record_certificate(conn: &mut DbConnection, new: &NewCertificate) -> Result<(), Error> {
    let serial = canonical_serial(&new.serial)?;
    let inserted = diesel::insert_into(issued_certificate::table)
        .values((
            issued_certificate::serial.eq(&serial),
            issued_certificate::role.eq(new.role.as_str()),
            issued_certificate::uid.eq(new.uid),
            issued_certificate::sid.eq(new.sid),
            issued_certificate::not_before.eq(new.not_before),
            issued_certificate::not_after.eq(new.not_after),
            issued_certificate::created.eq(now_utc()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(()),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            Err(Error::SerialTaken(serial))
        }
        Err(other) => Err(other.into()),
    }
}

/// The recorded certificate with this serial (any case of hex digits).
pub fn find_certificate(
    conn: &mut DbConnection,
    serial: &str,
) -> Result<Option<IssuedCertificate>, Error> {
    let serial = canonical_serial(serial)?;
    let row = issued_certificate::table
        .find(serial)
        .select(CertificateRow::as_select())
        .get_result(conn)
        .optional()?;
    Ok(row.map(IssuedCertificate::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::sqlite_store;

    #[test]
    fn record_and_find() {
        let (store, _dir) = sqlite_store();
        let not_before = chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_micro_opt(3, 4, 5, 600_000)
            .unwrap();
        let not_after = not_before + chrono::Duration::days(365);
        let new = NewCertificate {
            serial: "00AbCdEf0123".to_owned(),
            role: Role::Manager,
            uid: Some(UserId(1)),
            sid: Some(ServiceId(2)),
            not_before,
            not_after,
        };
        store
            .run_blocking(|conn| {
                record_certificate(conn, &new)?;
                let found = find_certificate(conn, "00abcdef0123")?.unwrap();
                assert_eq!(found.serial, "00abcdef0123");
                assert_eq!(found.role, "manager");
                assert_eq!(
                    (found.uid, found.sid),
                    (Some(UserId(1)), Some(ServiceId(2)))
                );
                assert_eq!((found.not_before, found.not_after), (not_before, not_after));
                assert_eq!(find_certificate(conn, "00ABCDEF0123")?, Some(found));
                // The same number in another case is the same serial.
                let mut again = new.clone();
                again.serial = "00abcdef0123".to_owned();
                let err = record_certificate(conn, &again).unwrap_err();
                assert!(
                    matches!(&err, Error::SerialTaken(s) if s == "00abcdef0123"),
                    "{err:?}"
                );
                let mut bad = new.clone();
                bad.serial = "xyz".to_owned();
                assert!(matches!(
                    record_certificate(conn, &bad),
                    Err(Error::InvalidSerial(_))
                ));
                assert!(matches!(
                    find_certificate(conn, ""),
                    Err(Error::InvalidSerial(_))
                ));
                let frontend = NewCertificate {
                    serial: "01".to_owned(),
                    role: Role::Frontend,
                    uid: None,
                    sid: None,
                    not_before,
                    not_after,
                };
                record_certificate(conn, &frontend)?;
                assert_eq!(find_certificate(conn, "01")?.unwrap().uid, None);
                assert_eq!(find_certificate(conn, "02")?, None);
                Ok::<_, Error>(())
            })
            .unwrap();
    }
}
