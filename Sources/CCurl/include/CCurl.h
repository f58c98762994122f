#ifndef HAUL_CCURL_H
#define HAUL_CCURL_H

// Typed forwarders for libcurl's variadic calls, which Swift cannot call directly.
// No logic lives here: each function forwards one call with one argument type.

#include <curl/curl.h>

CURLcode ccurl_easy_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode ccurl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value);
CURLcode ccurl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode ccurl_easy_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode ccurl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value);
CURLcode ccurl_easy_setopt_write_function(CURL *handle, CURLoption option, curl_write_callback value);
CURLcode ccurl_easy_setopt_closesocket_function(CURL *handle, curl_closesocket_callback value);

CURLMcode ccurl_multi_setopt_long(CURLM *handle, CURLMoption option, long value);
CURLMcode ccurl_multi_setopt_pointer(CURLM *handle, CURLMoption option, void *value);
CURLMcode ccurl_multi_setopt_socket_function(CURLM *handle, curl_socket_callback value);
CURLMcode ccurl_multi_setopt_timer_function(CURLM *handle, curl_multi_timer_callback value);

CURLSHcode ccurl_share_setopt_long(CURLSH *share, CURLSHoption option, long value);

CURLcode ccurl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode ccurl_easy_getinfo_off_t(CURL *handle, CURLINFO info, curl_off_t *value);
CURLcode ccurl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value);
CURLcode ccurl_easy_getinfo_string(CURL *handle, CURLINFO info, const char **value);
CURLcode ccurl_easy_getinfo_socket(CURL *handle, CURLINFO info, curl_socket_t *value);

/// `CURLMsg.data.result` sits in a union; this reads it without Swift touching the union.
CURLcode ccurl_msg_result(const CURLMsg *message);

/// Sentinels that are macros in curl.h.
static const curl_socket_t ccurl_socket_timeout = CURL_SOCKET_TIMEOUT;
static const size_t ccurl_writefunc_pause = CURL_WRITEFUNC_PAUSE;
static const long ccurl_global_all = CURL_GLOBAL_ALL;
static const int ccurl_pause_all = CURLPAUSE_ALL;
static const int ccurl_pause_cont = CURLPAUSE_CONT;

#endif
