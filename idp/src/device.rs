//! Court-issued devices registered to a user: a `device` certificate maps to its device by the
//! certificate's SHA-256 fingerprint, and a person signing in on it still gives their own
//! factors (`tianping idp device add|list|remove`).

use tianping_core::{SubjectId, UnixTime};
#[cfg(feature = "store")]
use tianping_core::{WireReader, WireWriter};

use crate::IdpError;
use crate::directory::Directory;
use crate::store::Store;

/// A device registered to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its id, `[a-z0-9-]{3,64}` (what tokens and audit events name).
    pub id: String,
    /// The user it is issued to.
    pub owner: SubjectId,
    /// SHA-256 of its certificate's DER.
    pub fingerprint: [u8; 32],
    /// A description (`Enforcement tablet 7`).
    pub name: String,
    /// When it was registered.
    pub added: UnixTime,
}

#[cfg(feature = "store")]
const VERSION: u8 = 1;

impl Device {
    /// Whether `id` is a valid device id.
    pub fn valid_id(id: &str) -> bool {
        (3..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    /// The fingerprint as lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// The stored form.
    #[cfg(feature = "store")]
    pub(crate) fn encode(&self) -> Result<Vec<u8>, IdpError> {
        let mut w = WireWriter::new();
        w.u8(VERSION);
        w.str16(&self.id)?;
        w.str16(self.owner.as_str())?;
        w.raw(&self.fingerprint);
        w.str16(&self.name)?;
        w.u64(self.added.as_millis());
        Ok(w.into_bytes())
    }

    /// Reads the stored form.
    #[cfg(feature = "store")]
    pub(crate) fn decode(b: &[u8]) -> Result<Self, IdpError> {
        let bad = |what: &str| IdpError::Store(format!("a stored device's {what} is not valid"));
        let mut r = WireReader::new(b);
        if r.u8("version")? != VERSION {
            return Err(bad("version"));
        }
        let id = r.str16("id")?.to_owned();
        let owner = r.str16("owner")?.parse().map_err(|_| bad("owner"))?;
        let fingerprint = r.array::<32>("fingerprint")?;
        let name = r.str16("name")?.to_owned();
        let added = UnixTime::from_millis(r.u64("added")?);
        r.finish()?;
        Ok(Self {
            id,
            owner,
            fingerprint,
            name,
            added,
        })
    }
}

/// The devices of the directory, their rules checked before any write.
#[derive(Clone, Copy)]
pub struct Devices<'a> {
    store: &'a dyn Store,
}

impl std::fmt::Debug for Devices<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices").finish_non_exhaustive()
    }
}

impl<'a> Devices<'a> {
    /// The devices kept in `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Self { store }
    }

    /// Registers a device: a valid id not yet taken, a user of the directory, a certificate
    /// no other device has.
    pub fn add(&self, device: Device) -> Result<(), IdpError> {
        let refuse = |why: String| Err(IdpError::Directory(why));
        if !Device::valid_id(&device.id) {
            return refuse(format!(
                "`{}` is not a device id (3 to 64 of a-z, 0-9 and -)",
                device.id.escape_debug()
            ));
        }
        if device.name.chars().count() > 128 || device.name.chars().any(char::is_control) {
            return refuse("a device name has at most 128 characters, none a control".into());
        }
        if Directory::new(self.store).user(&device.owner)?.is_none() {
            return refuse(format!("there is no user `{}`", device.owner));
        }
        if self.store.device(&device.id)?.is_some() {
            return refuse(format!("device `{}` is already registered", device.id));
        }
        if let Some(other) = self.store.device_by_fingerprint(&device.fingerprint)? {
            return refuse(format!(
                "that certificate is registered as device `{}`",
                other.id
            ));
        }
        self.store.put_device(&device)
    }

    /// Every device, by id.
    pub fn list(&self) -> Result<Vec<Device>, IdpError> {
        let mut all = self.store.devices()?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    /// A device by id.
    pub fn get(&self, id: &str) -> Result<Option<Device>, IdpError> {
        self.store.device(id)
    }

    /// The device a certificate (by fingerprint) is registered as.
    pub fn by_certificate(&self, fingerprint: &[u8; 32]) -> Result<Option<Device>, IdpError> {
        self.store.device_by_fingerprint(fingerprint)
    }

    /// Forgets a device; refuses one not registered.
    pub fn remove(&self, id: &str) -> Result<Device, IdpError> {
        let device = self
            .store
            .device(id)?
            .ok_or_else(|| IdpError::Directory(format!("there is no device `{id}`")))?;
        self.store.remove_device(&device.fingerprint)?;
        Ok(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::User;
    use crate::store::MemoryStore;

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn device(id: &str, fp: u8) -> Device {
        Device {
            id: id.into(),
            owner: "enf-0001".parse().unwrap(),
            fingerprint: [fp; 32],
            name: "Enforcement tablet".into(),
            added: NOW,
        }
    }

    #[test]
    fn devices_round_trip_and_keep_their_rules() {
        let d = device("tablet-07", 7);
        #[cfg(feature = "store")]
        {
            assert_eq!(Device::decode(&d.encode().unwrap()).unwrap(), d);
            assert!(Device::decode(&[2]).is_err());
        }

        let store = MemoryStore::new();
        let devices = Devices::new(&store);
        // the owner must be a user
        assert!(devices.add(d.clone()).is_err());
        Directory::new(&store)
            .add_user(User::new(
                "enf-0001".parse().unwrap(),
                "wang.qiang",
                "Wang",
                NOW,
            ))
            .unwrap();
        devices.add(d.clone()).unwrap();
        assert_eq!(devices.by_certificate(&[7; 32]).unwrap(), Some(d.clone()));
        assert_eq!(devices.by_certificate(&[8; 32]).unwrap(), None);
        // neither its id nor its certificate twice; ids checked
        assert!(devices.add(device("tablet-07", 8)).is_err());
        assert!(devices.add(device("tablet-08", 7)).is_err());
        assert!(devices.add(device("Tablet 8", 8)).is_err());
        devices.add(device("tablet-08", 8)).unwrap();
        let ids: Vec<String> = devices.list().unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(ids, vec!["tablet-07", "tablet-08"]);
        assert_eq!(devices.remove("tablet-07").unwrap(), d);
        assert!(devices.remove("tablet-07").is_err());
        assert_eq!(devices.by_certificate(&[7; 32]).unwrap(), None);
        assert_eq!(devices.list().unwrap().len(), 1);
    }
}
