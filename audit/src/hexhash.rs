//! Serde for hashes as lowercase hex.

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

use crate::merkle::Hash;

pub(crate) fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
    let s = String::deserialize(d)?;
    let v = hex::decode(&s).map_err(D::Error::custom)?;
    v.try_into()
        .map_err(|_| D::Error::custom("a hash is 32 bytes"))
}
