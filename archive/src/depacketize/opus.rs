//! Opus RTP payload format (RFC 7587).
