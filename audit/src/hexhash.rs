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

/// Lists of hashes as lists of hex strings.
pub(crate) mod list {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::SerializeSeq as _};

    use crate::merkle::Hash;

    pub(crate) fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(&hex::encode(h))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                hex::decode(s)
                    .map_err(D::Error::custom)?
                    .try_into()
                    .map_err(|_| D::Error::custom("a hash is 32 bytes"))
            })
            .collect()
    }
}
