// A small JSON reader/writer in plain Kotlin: the app's logic runs on the host JVM in the tests,
// where Android's org.json does not exist, and manifest.json / runner results need no more than this.
package ai.edgevlm.demo

/** Objects become Map<String, Any?> (key order kept), arrays List<Any?>, numbers Double or Long. */
object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        val value = reader.value()
        reader.skipSpace()
        if (reader.pos != text.length) reader.fail("trailing text")
        return value
    }

    fun write(value: Any?): String = StringBuilder().also { append(it, value) }.toString()

    private fun append(out: StringBuilder, value: Any?) {
        when (value) {
            null -> out.append("null")
            is String -> quote(out, value)
            is Boolean, is Int, is Long -> out.append(value.toString())
            is Number -> {
                val d = value.toDouble()
                require(d.isFinite()) { "JSON has no $d" }
                out.append(if (d == Math.rint(d) && Math.abs(d) < 1e15) d.toLong().toString() else d.toString())
            }
            is Map<*, *> -> {
                out.append('{')
                value.entries.forEachIndexed { i, (k, v) ->
                    if (i > 0) out.append(',')
                    quote(out, k as String); out.append(':'); append(out, v)
                }
                out.append('}')
            }
            is Iterable<*> -> {
                out.append('[')
                value.forEachIndexed { i, v -> if (i > 0) out.append(','); append(out, v) }
                out.append(']')
            }
            else -> throw IllegalArgumentException("cannot write a ${value::class.java.name} as JSON")
        }
    }

    private fun quote(out: StringBuilder, s: String) {
        out.append('"')
        for (c in s) when {
            c == '"' -> out.append("\\\"")
            c == '\\' -> out.append("\\\\")
            c == '\n' -> out.append("\\n")
            c < ' ' -> out.append(String.format("\\u%04x", c.code))
            else -> out.append(c)
        }
        out.append('"')
    }

    private class Reader(val s: String) {
        var pos = 0

        fun fail(what: String): Nothing = throw IllegalArgumentException("invalid JSON at offset $pos: $what")

        fun skipSpace() { while (pos < s.length && s[pos].isWhitespace()) pos++ }

        fun value(): Any? {
            skipSpace()
            if (pos >= s.length) fail("unexpected end")
            return when (s[pos]) {
                '{' -> obj()
                '[' -> array()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> number()
            }
        }

        fun literal(word: String, value: Any?): Any? {
            if (!s.startsWith(word, pos)) fail("expected $word")
            pos += word.length
            return value
        }

        fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipSpace()
            if (s.getOrNull(pos) == '}') { pos++; return out }
            while (true) {
                skipSpace()
                if (s.getOrNull(pos) != '"') fail("expected a key")
                val key = string()
                skipSpace()
                if (s.getOrNull(pos) != ':') fail("expected ':'")
                pos++
                out[key] = value()
                skipSpace()
                when (s.getOrNull(pos)) {
                    ',' -> pos++
                    '}' -> { pos++; return out }
                    else -> fail("expected ',' or '}'")
                }
            }
        }

        fun array(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipSpace()
            if (s.getOrNull(pos) == ']') { pos++; return out }
            while (true) {
                out.add(value())
                skipSpace()
                when (s.getOrNull(pos)) {
                    ',' -> pos++
                    ']' -> { pos++; return out }
                    else -> fail("expected ',' or ']'")
                }
            }
        }

        fun string(): String {
            val out = StringBuilder()
            pos++
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when (c) {
                    '"' -> return out.toString()
                    '\\' -> {
                        val e = s.getOrNull(pos++) ?: fail("unterminated escape")
                        when (e) {
                            'n' -> out.append('\n'); 't' -> out.append('\t'); 'r' -> out.append('\r')
                            'b' -> out.append('\b'); 'f' -> out.append('\u000c')
                            'u' -> {
                                if (pos + 4 > s.length) fail("short \\u escape")
                                out.append(s.substring(pos, pos + 4).toInt(16).toChar()); pos += 4
                            }
                            else -> out.append(e)  // \" \\ \/
                        }
                    }
                    else -> out.append(c)
                }
            }
        }

        fun number(): Number {
            val start = pos
            while (pos < s.length && (s[pos].isDigit() || s[pos] in "+-.eE")) pos++
            val text = s.substring(start, pos)
            if (text.isEmpty()) fail("unexpected '${s[pos]}'")
            return text.toLongOrNull() ?: text.toDoubleOrNull() ?: fail("bad number $text")
        }
    }
}

/** Typed reads of parsed JSON that say which key was missing or wrong. */
@Suppress("UNCHECKED_CAST")
fun Map<String, Any?>.obj(key: String): Map<String, Any?> =
    this[key] as? Map<String, Any?> ?: throw IllegalArgumentException("'$key' is not a JSON object")

@Suppress("UNCHECKED_CAST")
fun Map<String, Any?>.list(key: String): List<Any?> =
    this[key] as? List<Any?> ?: throw IllegalArgumentException("'$key' is not a JSON array")

fun Map<String, Any?>.str(key: String): String =
    this[key] as? String ?: throw IllegalArgumentException("'$key' is not a string")

fun Map<String, Any?>.num(key: String): Double =
    (this[key] as? Number)?.toDouble() ?: throw IllegalArgumentException("'$key' is not a number")
