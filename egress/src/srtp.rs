//! SRTP and SRTCP sealing (RFC 3711, RFC 7714) for the send path, keyed from DTLS-SRTP
//! exported keying material (RFC 5764 §4.2).
//!
//! [`SrtpSender`] seals what leaves towards a viewer; [`SrtpReceiver`] opens what a peer sends
//! (used by tests and the in-memory harness). Packets are sealed in place in the caller's
//! buffer: reserve [`SrtpProfile::rtp_overhead`] / [`SrtpProfile::rtcp_overhead`] spare
//! capacity and nothing is allocated per packet. Session keys and cipher contexts are built
//! once, in the constructors. When an operation returns an error after it has started
//! transforming the buffer, the buffer's contents are unspecified and must be discarded.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

/// SRTP key derivation label: SRTP encryption key.
const LABEL_RTP_ENC: u8 = 0x00;
/// SRTP key derivation label: SRTP authentication key.
const LABEL_RTP_AUTH: u8 = 0x01;
/// SRTP key derivation label: SRTP salt.
const LABEL_RTP_SALT: u8 = 0x02;
/// SRTP key derivation label: SRTCP encryption key.
const LABEL_RTCP_ENC: u8 = 0x03;
/// SRTP key derivation label: SRTCP authentication key.
const LABEL_RTCP_AUTH: u8 = 0x04;
/// SRTP key derivation label: SRTCP salt.
const LABEL_RTCP_SALT: u8 = 0x05;

/// Length of the fixed RTP header.
const RTP_FIXED_HEADER_LEN: usize = 12;
/// Length of the RTCP header plus sender SSRC that SRTCP leaves in the clear.
const RTCP_CLEAR_LEN: usize = 8;
/// Length of the E flag plus SRTCP index word.
const SRTCP_INDEX_LEN: usize = 4;
/// The E (encrypted) flag of the SRTCP index word.
const SRTCP_E_FLAG: u32 = 0x8000_0000;
/// Largest SRTCP index (31 bits).
const SRTCP_INDEX_MAX: u32 = 0x7FFF_FFFF;
/// HMAC-SHA1 tag length of the AES-CM profile (80 bits).
const HMAC_TAG_LEN: usize = 10;
/// HMAC-SHA1 key length.
const HMAC_KEY_LEN: usize = 20;
/// GCM tag length.
const GCM_TAG_LEN: usize = 16;
/// Session salt length of the AES-CM profile.
const CM_SALT_LEN: usize = 14;
/// Session salt length of the GCM profiles.
const GCM_SALT_LEN: usize = 12;

/// A DTLS-SRTP protection profile this crate can seal with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80`: AES-128 counter mode, 80-bit HMAC-SHA1 tag (RFC 3711).
    Aes128CmSha1_80,
    /// `SRTP_AEAD_AES_128_GCM`: AES-128-GCM with a 16-byte tag (RFC 7714).
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM`: AES-256-GCM with a 16-byte tag (RFC 7714).
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Master key length in bytes.
    pub fn master_key_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmSha1_80 | SrtpProfile::AeadAes128Gcm => 16,
            SrtpProfile::AeadAes256Gcm => 32,
        }
    }

    /// Master salt length in bytes.
    pub fn master_salt_len(self) -> usize {
        match self {
            SrtpProfile::Aes128CmSha1_80 => CM_SALT_LEN,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => GCM_SALT_LEN,
        }
    }

    /// Bytes of DTLS-SRTP keying material to export for this profile (both keys, both salts).
    pub fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    /// Bytes appended to an RTP packet by sealing (the tag).
    pub fn rtp_overhead(self) -> usize {
        match self {
            SrtpProfile::Aes128CmSha1_80 => HMAC_TAG_LEN,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => GCM_TAG_LEN,
        }
    }

    /// Bytes appended to an RTCP packet by sealing (E flag with SRTCP index, and the tag).
    pub fn rtcp_overhead(self) -> usize {
        SRTCP_INDEX_LEN + self.rtp_overhead()
    }
}

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    /// The keying material does not have the length the profile needs.
    #[error("keying material is {got} bytes, the profile needs {expected}")]
    KeyingMaterialLength {
        /// Length the profile needs.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The crypto backend rejected a key or failed an operation.
    #[error("crypto backend failure")]
    Crypto,
    /// The RTP header length is shorter than the fixed header or longer than the packet.
    #[error("invalid RTP header length {header_len} for a packet of {len} bytes")]
    RtpHeaderLength {
        /// Header length given.
        header_len: usize,
        /// Packet length.
        len: usize,
    },
    /// The packet is too short to hold what the operation needs.
    #[error("packet of {len} bytes is shorter than the minimum of {min}")]
    TooShort {
        /// Packet length.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The packet would exceed the largest representable length.
    #[error("packet too large")]
    TooLarge,
    /// The authentication tag did not verify.
    #[error("authentication failed")]
    AuthFailed,
    /// The SRTCP index of this sender SSRC is exhausted; the keys must be renegotiated.
    #[error("SRTCP index exhausted for SSRC {0:#010x}")]
    RtcpIndexExhausted(u32),
    /// An SRTCP packet with the E flag clear under a GCM profile (not supported).
    #[error("unencrypted SRTCP is not supported for GCM profiles")]
    UnencryptedRtcp,
}

/// Keyed cipher state for one of SRTP or SRTCP in one direction.
enum Cipher {
    /// AES-CM with HMAC-SHA1 (boxed: its HMAC state is about 1.7 KiB, and AES-GCM, which most
    /// peers negotiate, should not pay for it in every viewer).
    Cm(Box<CmCipher>),
    /// AES-GCM.
    Gcm {
        /// AEAD keyed with the session encryption key.
        key: LessSafeKey,
        /// Session salt.
        salt: [u8; GCM_SALT_LEN],
    },
}

/// AES-CM with HMAC-SHA1 key state.
struct CmCipher {
    /// AES-CTR keyed with the session encryption key.
    ctr: EncryptingKey,
    /// HMAC-SHA1 keyed with the session authentication key.
    auth: hmac::Key,
    /// Session salt.
    salt: [u8; CM_SALT_LEN],
}

/// Fills `out` with the AES-CM PRF keystream of the SRTP KDF (RFC 3711 §4.3.1 and §4.3.3,
/// key derivation rate 0) for `label`.
fn kdf(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) -> Result<(), SrtpError> {
    let alg = match master_key.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err(SrtpError::Crypto),
    };
    if master_salt.len() > CM_SALT_LEN {
        return Err(SrtpError::Crypto);
    }
    let key = UnboundCipherKey::new(alg, master_key).map_err(|_| SrtpError::Crypto)?;
    let ctr = EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)?;
    // x = (label || 0^48) XOR salt, salt left-aligned in 112 bits; the input block is x * 2^16
    // and the low 16 bits count blocks.
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    out.fill(0);
    ctr.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| SrtpError::Crypto)?;
    Ok(())
}

impl Cipher {
    /// Derives the session keys for SRTP (`rtcp == false`) or SRTCP and keys the cipher.
    fn derive(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
        rtcp: bool,
    ) -> Result<Self, SrtpError> {
        let (l_enc, l_auth, l_salt) = if rtcp {
            (LABEL_RTCP_ENC, LABEL_RTCP_AUTH, LABEL_RTCP_SALT)
        } else {
            (LABEL_RTP_ENC, LABEL_RTP_AUTH, LABEL_RTP_SALT)
        };
        let mut enc = [0u8; 32];
        let enc = &mut enc[..profile.master_key_len()];
        kdf(master_key, master_salt, l_enc, enc)?;
        match profile {
            SrtpProfile::Aes128CmSha1_80 => {
                let mut auth = [0u8; HMAC_KEY_LEN];
                kdf(master_key, master_salt, l_auth, &mut auth)?;
                let mut salt = [0u8; CM_SALT_LEN];
                kdf(master_key, master_salt, l_salt, &mut salt)?;
                Self::cm(enc, &auth, salt)
            }
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => {
                let mut salt = [0u8; GCM_SALT_LEN];
                kdf(master_key, master_salt, l_salt, &mut salt)?;
                Self::gcm(enc, salt)
            }
        }
    }

    /// Keys an AES-CM/HMAC-SHA1 cipher from session keys.
    fn cm(enc: &[u8], auth: &[u8], salt: [u8; CM_SALT_LEN]) -> Result<Self, SrtpError> {
        let key = UnboundCipherKey::new(&AES_128, enc).map_err(|_| SrtpError::Crypto)?;
        let ctr = EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)?;
        let auth = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth);
        Ok(Cipher::Cm(Box::new(CmCipher { ctr, auth, salt })))
    }

    /// Keys an AES-GCM cipher from session keys (AES-128 or AES-256 by key length).
    fn gcm(enc: &[u8], salt: [u8; GCM_SALT_LEN]) -> Result<Self, SrtpError> {
        let alg = match enc.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            _ => return Err(SrtpError::Crypto),
        };
        let key = UnboundKey::new(alg, enc).map_err(|_| SrtpError::Crypto)?;
        Ok(Cipher::Gcm {
            key: LessSafeKey::new(key),
            salt,
        })
    }

    /// Tag length of this cipher.
    fn tag_len(&self) -> usize {
        match self {
            Cipher::Cm(_) => HMAC_TAG_LEN,
            Cipher::Gcm { .. } => GCM_TAG_LEN,
        }
    }
}

/// Applies AES-CTR keystream to `data` with counter block `iv`.
fn ctr_apply(ctr: &EncryptingKey, iv: [u8; 16], data: &mut [u8]) -> Result<(), SrtpError> {
    if data.is_empty() {
        return Ok(());
    }
    ctr.less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| SrtpError::Crypto)?;
    Ok(())
}

/// Computes the truncated HMAC-SHA1 tag over `parts`.
fn hmac_tag(key: &hmac::Key, parts: &[&[u8]]) -> [u8; HMAC_TAG_LEN] {
    let mut ctx = hmac::Context::with_key(key);
    for p in parts {
        ctx.update(p);
    }
    let full = ctx.sign();
    let mut tag = [0u8; HMAC_TAG_LEN];
    tag.copy_from_slice(&full.as_ref()[..HMAC_TAG_LEN]);
    tag
}

/// Reads a big-endian u32 at `at` (caller guarantees bounds).
fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// AES-CM counter block for SRTP (RFC 3711 §4.1.1).
fn cm_rtp_iv(salt: &[u8; CM_SALT_LEN], ssrc: u32, roc: u32, seq: u16) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..CM_SALT_LEN].copy_from_slice(salt);
    xor_into(&mut iv[4..8], &ssrc.to_be_bytes());
    xor_into(&mut iv[8..12], &roc.to_be_bytes());
    xor_into(&mut iv[12..14], &seq.to_be_bytes());
    iv
}

/// AES-CM counter block for SRTCP (RFC 3711 §4.1.1 with the SRTCP index).
fn cm_rtcp_iv(salt: &[u8; CM_SALT_LEN], ssrc: u32, index: u32) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..CM_SALT_LEN].copy_from_slice(salt);
    xor_into(&mut iv[4..8], &ssrc.to_be_bytes());
    xor_into(&mut iv[10..14], &index.to_be_bytes());
    iv
}

/// GCM nonce for SRTP (RFC 7714 §8.1).
fn gcm_rtp_iv(salt: &[u8; GCM_SALT_LEN], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = *salt;
    xor_into(&mut iv[2..6], &ssrc.to_be_bytes());
    xor_into(&mut iv[6..10], &roc.to_be_bytes());
    xor_into(&mut iv[10..12], &seq.to_be_bytes());
    iv
}

/// GCM nonce for SRTCP (RFC 7714 §9.1).
fn gcm_rtcp_iv(salt: &[u8; GCM_SALT_LEN], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = *salt;
    xor_into(&mut iv[2..6], &ssrc.to_be_bytes());
    xor_into(&mut iv[8..12], &index.to_be_bytes());
    iv
}

/// XORs `src` into `dst` byte by byte.
fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// SRTP and SRTCP cipher state for one direction.
struct Keys {
    /// SRTP cipher.
    rtp: Cipher,
    /// SRTCP cipher.
    rtcp: Cipher,
}

impl Keys {
    /// Picks one side's master key and salt out of the keying material and derives both ciphers.
    fn new(profile: SrtpProfile, km: &[u8], client_write: bool) -> Result<Self, SrtpError> {
        let expected = profile.keying_material_len();
        if km.len() != expected {
            return Err(SrtpError::KeyingMaterialLength {
                expected,
                got: km.len(),
            });
        }
        let kl = profile.master_key_len();
        let sl = profile.master_salt_len();
        // client_key | server_key | client_salt | server_salt
        let (key, salt) = if client_write {
            (&km[..kl], &km[2 * kl..2 * kl + sl])
        } else {
            (&km[kl..2 * kl], &km[2 * kl + sl..])
        };
        Ok(Keys {
            rtp: Cipher::derive(profile, key, salt, false)?,
            rtcp: Cipher::derive(profile, key, salt, true)?,
        })
    }

    /// Validates an RTP packet layout and returns (ssrc, seq).
    fn rtp_fields(buf: &[u8], header_len: usize) -> Result<(u32, u16), SrtpError> {
        if header_len < RTP_FIXED_HEADER_LEN || header_len > buf.len() {
            return Err(SrtpError::RtpHeaderLength {
                header_len,
                len: buf.len(),
            });
        }
        Ok((be32(buf, 8), u16::from_be_bytes([buf[2], buf[3]])))
    }

    /// Seals an RTP packet in place and appends the tag.
    fn seal_rtp(&self, buf: &mut Vec<u8>, header_len: usize, roc: u32) -> Result<(), SrtpError> {
        let (ssrc, seq) = Self::rtp_fields(buf, header_len)?;
        buf.len()
            .checked_add(self.rtp.tag_len())
            .ok_or(SrtpError::TooLarge)?;
        match &self.rtp {
            Cipher::Cm(c) => {
                let CmCipher { ctr, auth, salt } = &**c;
                ctr_apply(ctr, cm_rtp_iv(salt, ssrc, roc, seq), &mut buf[header_len..])?;
                let tag = hmac_tag(auth, &[&buf[..], &roc.to_be_bytes()]);
                buf.extend_from_slice(&tag);
            }
            Cipher::Gcm { key, salt } => {
                let nonce = Nonce::assume_unique_for_key(gcm_rtp_iv(salt, ssrc, roc, seq));
                let (hdr, payload) = buf.split_at_mut(header_len);
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(&*hdr), payload)
                    .map_err(|_| SrtpError::Crypto)?;
                buf.extend_from_slice(tag.as_ref());
            }
        }
        Ok(())
    }

    /// Verifies and decrypts an SRTP packet in place and removes the tag.
    fn open_rtp(&self, buf: &mut Vec<u8>, header_len: usize, roc: u32) -> Result<(), SrtpError> {
        let tag_len = self.rtp.tag_len();
        let min = header_len
            .max(RTP_FIXED_HEADER_LEN)
            .checked_add(tag_len)
            .ok_or(SrtpError::TooLarge)?;
        if buf.len() < min {
            return Err(SrtpError::TooShort {
                len: buf.len(),
                min,
            });
        }
        let body_len = buf.len() - tag_len;
        let (ssrc, seq) = Self::rtp_fields(&buf[..body_len], header_len)?;
        match &self.rtp {
            Cipher::Cm(c) => {
                let CmCipher { ctr, auth, salt } = &**c;
                let (body, tag) = buf.split_at(body_len);
                let want = hmac_tag(auth, &[body, &roc.to_be_bytes()]);
                verify_slices_are_equal(&want, tag).map_err(|_| SrtpError::AuthFailed)?;
                buf.truncate(body_len);
                ctr_apply(ctr, cm_rtp_iv(salt, ssrc, roc, seq), &mut buf[header_len..])?;
            }
            Cipher::Gcm { key, salt } => {
                let nonce = Nonce::assume_unique_for_key(gcm_rtp_iv(salt, ssrc, roc, seq));
                let (hdr, rest) = buf.split_at_mut(header_len);
                key.open_in_place(nonce, Aad::from(&*hdr), rest)
                    .map_err(|_| SrtpError::AuthFailed)?;
                buf.truncate(body_len);
            }
        }
        Ok(())
    }

    /// Seals an RTCP compound packet in place with SRTCP index `index`.
    fn seal_rtcp(&self, buf: &mut Vec<u8>, index: u32) -> Result<(), SrtpError> {
        if buf.len() < RTCP_CLEAR_LEN {
            return Err(SrtpError::TooShort {
                len: buf.len(),
                min: RTCP_CLEAR_LEN,
            });
        }
        buf.len()
            .checked_add(SRTCP_INDEX_LEN + self.rtcp.tag_len())
            .ok_or(SrtpError::TooLarge)?;
        let ssrc = be32(buf, 4);
        let eword = (SRTCP_E_FLAG | (index & SRTCP_INDEX_MAX)).to_be_bytes();
        match &self.rtcp {
            Cipher::Cm(c) => {
                let CmCipher { ctr, auth, salt } = &**c;
                ctr_apply(
                    ctr,
                    cm_rtcp_iv(salt, ssrc, index),
                    &mut buf[RTCP_CLEAR_LEN..],
                )?;
                buf.extend_from_slice(&eword);
                let tag = hmac_tag(auth, &[&buf[..]]);
                buf.extend_from_slice(&tag);
            }
            Cipher::Gcm { key, salt } => {
                let nonce = Nonce::assume_unique_for_key(gcm_rtcp_iv(salt, ssrc, index));
                let mut aad = [0u8; RTCP_CLEAR_LEN + SRTCP_INDEX_LEN];
                aad[..RTCP_CLEAR_LEN].copy_from_slice(&buf[..RTCP_CLEAR_LEN]);
                aad[RTCP_CLEAR_LEN..].copy_from_slice(&eword);
                let tag = key
                    .seal_in_place_separate_tag(nonce, Aad::from(&aad), &mut buf[RTCP_CLEAR_LEN..])
                    .map_err(|_| SrtpError::Crypto)?;
                buf.extend_from_slice(tag.as_ref());
                buf.extend_from_slice(&eword);
            }
        }
        Ok(())
    }

    /// Verifies and decrypts an SRTCP packet in place, removing index and tag; returns the index.
    fn open_rtcp(&self, buf: &mut Vec<u8>) -> Result<u32, SrtpError> {
        let tag_len = self.rtcp.tag_len();
        let min = RTCP_CLEAR_LEN + SRTCP_INDEX_LEN + tag_len;
        if buf.len() < min {
            return Err(SrtpError::TooShort {
                len: buf.len(),
                min,
            });
        }
        let ssrc = be32(buf, 4);
        let plain_len = buf.len() - SRTCP_INDEX_LEN - tag_len;
        match &self.rtcp {
            Cipher::Cm(c) => {
                let CmCipher { ctr, auth, salt } = &**c;
                let body_len = buf.len() - tag_len;
                let (body, tag) = buf.split_at(body_len);
                let want = hmac_tag(auth, &[body]);
                verify_slices_are_equal(&want, tag).map_err(|_| SrtpError::AuthFailed)?;
                let eword = be32(buf, plain_len);
                let index = eword & SRTCP_INDEX_MAX;
                buf.truncate(plain_len);
                if eword & SRTCP_E_FLAG != 0 {
                    ctr_apply(
                        ctr,
                        cm_rtcp_iv(salt, ssrc, index),
                        &mut buf[RTCP_CLEAR_LEN..],
                    )?;
                }
                Ok(index)
            }
            Cipher::Gcm { key, salt } => {
                let eword_at = buf.len() - SRTCP_INDEX_LEN;
                let eword = be32(buf, eword_at);
                if eword & SRTCP_E_FLAG == 0 {
                    return Err(SrtpError::UnencryptedRtcp);
                }
                let index = eword & SRTCP_INDEX_MAX;
                let nonce = Nonce::assume_unique_for_key(gcm_rtcp_iv(salt, ssrc, index));
                let mut aad = [0u8; RTCP_CLEAR_LEN + SRTCP_INDEX_LEN];
                aad[..RTCP_CLEAR_LEN].copy_from_slice(&buf[..RTCP_CLEAR_LEN]);
                aad[RTCP_CLEAR_LEN..].copy_from_slice(&eword.to_be_bytes());
                key.open_in_place(nonce, Aad::from(&aad), &mut buf[RTCP_CLEAR_LEN..eword_at])
                    .map_err(|_| SrtpError::AuthFailed)?;
                buf.truncate(plain_len);
                Ok(index)
            }
        }
    }
}

/// One direction of SRTP: seals what we send.
pub struct SrtpSender {
    /// Negotiated profile.
    profile: SrtpProfile,
    /// Session ciphers for our write direction.
    keys: Keys,
    /// Next SRTCP index per sender SSRC.
    rtcp_index: Vec<(u32, u32)>,
}

impl SrtpSender {
    /// Builds the sender; `local_is_client`: this side is the DTLS client ("active") and seals
    /// with the client write keys, otherwise with the server write keys.
    pub fn new(
        profile: SrtpProfile,
        keying_material: &[u8],
        local_is_client: bool,
    ) -> Result<Self, SrtpError> {
        Ok(SrtpSender {
            profile,
            keys: Keys::new(profile, keying_material, local_is_client)?,
            rtcp_index: Vec::new(),
        })
    }

    /// The profile this sender seals with.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Seals the RTP packet in `buf` in place (header of `header_len` bytes, then payload) and
    /// appends the tag; `roc` is the rollover counter of the packet's SSRC (`ext_seq >> 16`).
    pub fn seal_rtp(
        &mut self,
        buf: &mut Vec<u8>,
        header_len: usize,
        roc: u32,
    ) -> Result<(), SrtpError> {
        self.keys.seal_rtp(buf, header_len, roc)
    }

    /// Seals an RTCP compound packet in place: encrypts, appends E flag with SRTCP index and the
    /// tag; the index is kept per sender SSRC (the first SSRC of the compound).
    pub fn seal_rtcp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        if buf.len() < RTCP_CLEAR_LEN {
            return Err(SrtpError::TooShort {
                len: buf.len(),
                min: RTCP_CLEAR_LEN,
            });
        }
        let ssrc = be32(buf, 4);
        let pos = match self.rtcp_index.iter().position(|(s, _)| *s == ssrc) {
            Some(p) => p,
            None => {
                self.rtcp_index.push((ssrc, 0));
                self.rtcp_index.len() - 1
            }
        };
        let index = self.rtcp_index[pos].1;
        if index > SRTCP_INDEX_MAX {
            return Err(SrtpError::RtcpIndexExhausted(ssrc));
        }
        self.keys.seal_rtcp(buf, index)?;
        self.rtcp_index[pos].1 = index + 1;
        Ok(())
    }

    /// Forgets the SRTCP index of `ssrc` (when that sender SSRC is retired).
    pub fn remove_rtcp_ssrc(&mut self, ssrc: u32) {
        self.rtcp_index.retain(|(s, _)| *s != ssrc);
    }
}

/// The other direction: opens what the peer sends (tests and the in-memory harness; no replay
/// protection).
pub struct SrtpReceiver {
    /// Negotiated profile.
    profile: SrtpProfile,
    /// Session ciphers for the peer's write direction.
    keys: Keys,
}

impl SrtpReceiver {
    /// Builds the receiver; `local_is_client`: this side is the DTLS client, so the peer seals
    /// with the server write keys.
    pub fn new(
        profile: SrtpProfile,
        keying_material: &[u8],
        local_is_client: bool,
    ) -> Result<Self, SrtpError> {
        Ok(SrtpReceiver {
            profile,
            keys: Keys::new(profile, keying_material, !local_is_client)?,
        })
    }

    /// The profile this receiver opens with.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Verifies the tag of the SRTP packet in `buf`, decrypts it in place and truncates the tag.
    pub fn open_rtp(
        &mut self,
        buf: &mut Vec<u8>,
        header_len: usize,
        roc: u32,
    ) -> Result<(), SrtpError> {
        self.keys.open_rtp(buf, header_len, roc)
    }

    /// Verifies and decrypts the SRTCP packet in `buf` in place, truncating index and tag.
    pub fn open_rtcp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        self.keys.open_rtcp(buf).map(|_| ())
    }
}

#[cfg(test)]
mod tests;
