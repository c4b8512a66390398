//! G4: which RPCs change something. This table is the one place that
//! decides it: the session-log layer refuses every changing RPC to a
//! view-only temporary support admin, before the handler runs, whatever
//! the RPC. A test checks that every RPC of the descriptor set is in the
//! table, so a new RPC cannot be added without being classified; until it
//! is, an unknown path counts as changing (fail safe).

/// What an RPC does to the service's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcEffect {
    /// Reads only (a first-use claim, G6, is a side effect of any use).
    Reads,
    /// Changes something: refused to view-only support (G4).
    Changes,
}

use RpcEffect::{Changes, Reads};

/// Every RPC of the three services, by full method path.
pub const RPC_EFFECTS: &[(&str, RpcEffect)] = &[
    ("/portal_access.v1.AdminService/CreateUser", Changes),
    ("/portal_access.v1.AdminService/ImportUsers", Changes),
    ("/portal_access.v1.AdminService/GetUser", Reads),
    ("/portal_access.v1.AdminService/ListUsers", Reads),
    ("/portal_access.v1.AdminService/SetUserType", Changes),
    (
        "/portal_access.v1.AdminService/RemoveUserFromPortal",
        Changes,
    ),
    ("/portal_access.v1.AdminService/DeleteUser", Changes),
    (
        "/portal_access.v1.AdminService/UpdateAdminPermissions",
        Changes,
    ),
    (
        "/portal_access.v1.AdminService/GetEffectivePermissions",
        Reads,
    ),
    ("/portal_access.v1.AdminService/CheckPermission", Reads),
    ("/portal_access.v1.AdminService/CheckEligibility", Reads),
    ("/portal_access.v1.PortalService/CreateRealm", Changes),
    ("/portal_access.v1.PortalService/CreateSubPortal", Changes),
    ("/portal_access.v1.PortalService/GetPortal", Reads),
    ("/portal_access.v1.PortalService/ListPortals", Reads),
    (
        "/portal_access.v1.PortalService/UpdateRealmSettings",
        Changes,
    ),
    ("/portal_access.v1.PortalService/GenerateApiKeys", Changes),
    ("/portal_access.v1.PortalService/GetApiKeys", Reads),
    ("/portal_access.v1.PortalService/VerifyApiKey", Reads),
    (
        "/portal_access.v1.SupportAccessService/RequestAccess",
        Changes,
    ),
    (
        "/portal_access.v1.SupportAccessService/WithdrawAccessRequest",
        Changes,
    ),
    (
        "/portal_access.v1.SupportAccessService/ListAccessRequests",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/DeclineAccessRequest",
        Changes,
    ),
    (
        "/portal_access.v1.SupportAccessService/ListPortalAccess",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/AllowAccess",
        Changes,
    ),
    (
        "/portal_access.v1.SupportAccessService/RevokeAccess",
        Changes,
    ),
    (
        "/portal_access.v1.SupportAccessService/ListSupportAccessLogs",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/RecordSupportAction",
        Changes,
    ),
    (
        "/portal_access.v1.SupportAccessService/StreamAuditEvents",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/VerifyAuditLog",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/GetLogCheckpoint",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/GetInclusionProof",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/GetConsistencyProof",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/GetLogVerifierKeys",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/ExportAccessEvidence",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/GetSupportAccessPolicy",
        Reads,
    ),
    (
        "/portal_access.v1.SupportAccessService/UpdateSupportAccessPolicy",
        Changes,
    ),
    (
        "/portal_access.v1.SupportAccessService/ApproveAccess",
        Changes,
    ),
    (
        "/portal_access.v1.SupportAccessService/EndSupportAccess",
        Changes,
    ),
];

/// The effect of the RPC at `path`; an unclassified path changes.
pub fn effect_of(path: &str) -> RpcEffect {
    RPC_EFFECTS
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(Changes, |(_, effect)| *effect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn served_paths() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut paths = Vec::new();
        for file in set
            .file
            .iter()
            .filter(|f| f.package() == "portal_access.v1")
        {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        paths
    }

    #[test]
    fn g4_every_rpc_is_classified_as_reading_or_changing() {
        let paths = served_paths();
        assert!(paths.len() > 30, "{paths:?}");
        let missing: Vec<&String> = paths
            .iter()
            .filter(|p| !RPC_EFFECTS.iter().any(|(known, _)| known == p))
            .collect();
        assert!(
            missing.is_empty(),
            "classify these RPCs in grpc/rpc_effects.rs (G4): {missing:?}"
        );
        let stale: Vec<&str> = RPC_EFFECTS
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !paths.iter().any(|served| served == p))
            .collect();
        assert!(stale.is_empty(), "no such RPC: {stale:?}");
    }

    #[test]
    fn g4_an_unknown_rpc_counts_as_changing() {
        assert_eq!(effect_of("/portal_access.v1.AdminService/Nope"), Changes);
        assert_eq!(
            effect_of("/portal_access.v1.AdminService/CheckPermission"),
            Reads
        );
    }
}
