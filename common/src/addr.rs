//! Addresses as the maps hold them: 16 bytes and a family. IPv4 sits in the
//! first 4 bytes (network order), the other 12 zero; IPv6 takes all 16.
//! Every map type with an address field (`ServiceKey`, `Backend`,
//! `FlowKey`, `PeerKey`, `PeerEvent`) stores it this way.

/// `family` of an IPv4 address (stored in the first 4 bytes).
pub const FAMILY_V4: u8 = 4;
/// `family` of an IPv6 address.
pub const FAMILY_V6: u8 = 6;
