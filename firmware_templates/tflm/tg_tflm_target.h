/* tinygen's TFLM target support (tg_tflm_target.cc): the last message TFLM logged. */
#ifndef TG_TFLM_TARGET_H
#define TG_TFLM_TARGET_H

#ifdef __cplusplus
extern "C" {
#endif

#define TG_TFLM_LOG_BYTES 240

/* What TFLM printed through DebugLog since the last clear, "; "-separated, first
 * message first (at most TG_TFLM_LOG_BYTES - 1 characters; "" when none). */
const char *tg_tflm_last_log(void);
void tg_tflm_clear_log(void);

#ifdef __cplusplus
}
#endif

#endif /* TG_TFLM_TARGET_H */
