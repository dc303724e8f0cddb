//! H264 RTP payload format (RFC 6184).
