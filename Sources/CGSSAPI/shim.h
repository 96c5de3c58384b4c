#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>

/* OIDs and the credential store are C structures pointing at static bytes: built here,
   where the bytes live as long as the program. */

/* SPNEGO (1.3.6.1.5.5.2): SMB2 session setup carries SPNEGO tokens. */
static inline gss_OID netuse_gss_spnego(void) {
    static gss_OID_desc oid = { 6, (void *)"\x2b\x06\x01\x05\x05\x02" };
    return &oid;
}

/* GSS_C_INQ_SSPI_SESSION_KEY (1.2.840.113554.1.2.2.5.5): the key SMB2 signs and seals with. */
static inline gss_OID netuse_gss_session_key(void) {
    static gss_OID_desc oid = { 11, (void *)"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x05\x05" };
    return &oid;
}

static inline gss_OID netuse_gss_hostbased_service(void) { return GSS_C_NT_HOSTBASED_SERVICE; }

/* Credentials from the named cache only, never from the process's default one (the daemon's). */
static inline OM_uint32 netuse_gss_acquire_from_ccache(OM_uint32 *minor, const char *ccache, gss_cred_id_t *credentials) {
    gss_key_value_element_desc element = { "ccache", ccache };
    gss_key_value_set_desc store = { 1, &element };
    return gss_acquire_cred_from(minor, GSS_C_NO_NAME, GSS_C_INDEFINITE, GSS_C_NO_OID_SET, GSS_C_INITIATE,
                                 &store, credentials, NULL, NULL);
}
