//! The diesel schema: the three ConPaaS 1.2 tables (as migration 2 leaves them) and
//! `issued_certificate`, `audit_event`, `credit_charge`, `installation`,
//! `abandoned_vm`, `agent_vm` and `service_cloud_key`. Written by hand to match `migrations/*/`; keep them in step.

diesel::table! {
    /// One row per ConPaaS account (1.2's table, name and columns kept).
    user (uid) {
        /// Primary key, never reused.
        uid -> Integer,
        /// Login name and CN of the user's certificate; unique.
        username -> Text,
        /// First name.
        fname -> Nullable<Text>,
        /// Last name.
        lname -> Nullable<Text>,
        /// E-mail; unique when present.
        email -> Nullable<Text>,
        /// Free text.
        affiliation -> Nullable<Text>,
        /// Argon2id PHC string, or a 1.2 MD5 hex digest not yet upgraded.
        password -> Nullable<Text>,
        /// UTC (1.2 wrote naive local time; rows of a 1.2 database keep it).
        created -> Nullable<Timestamp>,
        /// Never negative.
        credit -> BigInt,
        /// When the operator disabled the account, UTC; NULL while enabled (migration 9).
        disabled -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// A user's named group of services (1.2's table).
    application (aid) {
        /// Primary key, never reused.
        aid -> Integer,
        /// Display name; not unique (1.2's `/renameapp` allowed duplicates).
        name -> Nullable<Text>,
        /// Owner.
        user_id -> Integer,
    }
}

diesel::table! {
    /// One row per service (1.2's table).
    service (sid) {
        /// Primary key, never reused.
        sid -> Integer,
        /// Display name.
        name -> Nullable<Text>,
        /// Service type name.
        #[sql_name = "type"]
        service_type -> Nullable<Text>,
        /// Always `INIT`.
        state -> Nullable<Text>,
        /// UTC (1.2 wrote naive local time; rows of a 1.2 database keep it).
        created -> Nullable<Timestamp>,
        /// Manager VM public address; NULL while the VM is being created.
        manager -> Nullable<Text>,
        /// Cloud VM id; NULL while the VM is being created.
        vmid -> Nullable<Text>,
        /// Cloud name; NULL while the VM is being created.
        cloud -> Nullable<Text>,
        /// VPN subnet (CIDR); unique within an application.
        subnet -> Nullable<Text>,
        /// Owner.
        user_id -> Integer,
        /// Containing application.
        application_id -> Integer,
        /// `starting`, `running`, `stopping` or `undoing` (migration 4; [`Lifecycle`](crate::model::Lifecycle)).
        lifecycle -> Text,
    }
}

diesel::table! {
    /// Every certificate the CA issued (new in conpaas-rs): serial uniqueness and the
    /// base for revocation. Times are UTC.
    issued_certificate (serial) {
        /// Lowercase hexadecimal serial number.
        serial -> Text,
        /// `user`, `manager`, `agent` or `frontend`.
        role -> Text,
        /// The certificate's `UID`, if it has one.
        uid -> Nullable<Integer>,
        /// The certificate's `serviceLocator`, if it has one.
        sid -> Nullable<Integer>,
        /// Start of validity (UTC).
        not_before -> Timestamp,
        /// End of validity (UTC).
        not_after -> Timestamp,
        /// When it was recorded (UTC).
        created -> Timestamp,
    }
}

diesel::table! {
    /// The audit log (new in conpaas-rs): append-only, one row per event. Times are UTC.
    audit_event (id) {
        /// Increasing with time of writing.
        id -> BigInt,
        /// When it happened (UTC).
        at -> Timestamp,
        /// What happened: `user.created`, `login`, `certificate.issued`...
        event -> Text,
        /// `ok`, `refused`, `throttled`, `failed` or `deferred`.
        outcome -> Text,
        /// Who acted: `user:3`, `manager:3/7`, `frontend`, `operator`, `director`, `anonymous`.
        principal -> Text,
        /// The client's address, for events of a request.
        source -> Nullable<Text>,
        /// The director's id of the request (its answer's `x-request-id`).
        request_id -> Nullable<Text>,
        /// The user the event concerns.
        uid -> Nullable<Integer>,
        /// The user name the event concerns (as typed, for logins).
        username -> Nullable<Text>,
        /// The application it concerns.
        aid -> Nullable<Integer>,
        /// The service it concerns.
        sid -> Nullable<Integer>,
        /// The rest, a JSON object (never a secret).
        detail -> Text,
        /// The `x-request-id` the client sent, if any (migration 8).
        client_request_id -> Nullable<Text>,
    }
}

diesel::table! {
    /// Which installation the database belongs to (new in conpaas-rs, migration 6): one row at
    /// most. Times are UTC.
    installation (id) {
        /// Always 1.
        id -> Integer,
        /// The tag of the CA the database was set up with (`cps-<tag>-s<sid>` client tokens).
        tag -> Text,
        /// When the tag was recorded (UTC).
        recorded -> Timestamp,
        /// Since when the reaper is held (a VM listed whose sid this database never gave).
        held_since -> Nullable<Timestamp>,
        /// The highest sid listed when the hold began.
        held_listed_sid -> Nullable<Integer>,
        /// The highest sid the database had given when the hold began.
        held_allocated_sid -> Nullable<Integer>,
    }
}

diesel::table! {
    /// Each manager credit charge applied (new in conpaas-rs, migration 5): its id makes a
    /// charge apply once however often it is retried or replayed. Pruned after 30 days.
    credit_charge (id) {
        /// Random 128-bit id, lowercase hexadecimal.
        id -> Text,
        /// The user charged.
        uid -> Integer,
        /// The amount asked (a deferred charge may have taken less: the credit left).
        amount -> BigInt,
        /// When the manager asked (UTC).
        at -> Timestamp,
    }
}

diesel::joinable!(application -> user (user_id));
diesel::joinable!(service -> application (application_id));
diesel::table! {
    /// VMs created for a service whose row was gone when they arrived (new in conpaas-rs,
    /// migration 7), kept until the cloud confirms them terminated. Times are UTC.
    abandoned_vm (cloud, vmid) {
        /// The cloud's name.
        cloud -> Text,
        /// The cloud's id of the VM.
        vmid -> Text,
        /// The service it was created for.
        sid -> Integer,
        /// When it was recorded (UTC).
        noted -> Timestamp,
    }
}

diesel::table! {
    /// The agent VMs managers start through the director (new in conpaas-rs, migration 10),
    /// with the service rows' lifecycle. Times are UTC.
    agent_vm (id) {
        /// Primary key, never reused: the OCCI id the manager holds.
        id -> Integer,
        /// The service whose manager asked.
        sid -> Integer,
        /// The service's owner.
        uid -> Integer,
        /// The cloud's name (`iaas` for the default).
        cloud -> Text,
        /// The name the manager gave.
        name -> Text,
        /// The cloud's id of the VM; NULL until created.
        vmid -> Nullable<Text>,
        /// The VM's address; NULL until created.
        address -> Nullable<Text>,
        /// `starting`, `running`, `stopping` or `undoing`.
        lifecycle -> Text,
        /// When the manager asked (UTC).
        created -> Timestamp,
    }
}

diesel::table! {
    /// Each service's credential for the managers' cloud (migration 10): the SHA-256 (hex) of
    /// what its manager sends. Deleted with the service.
    service_cloud_key (sid) {
        /// The service.
        sid -> Integer,
        /// SHA-256 hex of the SHA-1 hex of the key.
        key_hash -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    agent_vm,
    service_cloud_key,
    abandoned_vm,
    user,
    application,
    service,
    issued_certificate,
    audit_event,
    credit_charge,
    installation,
);
