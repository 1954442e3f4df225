// Hearth oracle driver: runs a GGUF model through llama.cpp (linked statically from the
// build made by scripts/fetch-llama-cpp.sh --build) and writes, as JSON on stdout:
//   * the prompt tokens, tokenized exactly like llama-server's /completion endpoint does for
//     a raw string prompt (llama_tokenize with add_special=true, parse_special=true; the
//     vocabulary's own tokenizer.ggml.add_bos_token / add_eos_token metadata decides BOS/EOS),
//   * for every prompt position i, the top-K next-token ids after tokens[0..=i] with their
//     log-probabilities (log-softmax over the full vocabulary, computed here in double),
//   * a greedy continuation (argmax, first index wins ties like llama.cpp's greedy sampler)
//     of at most N tokens, stopping early only at an end-of-generation token, with the same
//     top-K per generated step (so both the batched-prompt path and the one-token decode
//     path of an engine can be checked).
//
// This file is the project's own code; it only calls llama.cpp's public C API (llama.h).
// Build: scripts/oracle/build.sh.  Used by scripts/oracle/gen_golden.py.
//
// Usage: hearth-oracle-logits -m MODEL.gguf -f PROMPT.txt [-n 64] [-k 5] [-t 2] [-c 2048]
//                             [--fa auto|on|off] [--kv f16|f32]
//        hearth-oracle-logits -m MODEL.gguf -f TEXT.txt --ppl N_CTX [-t 2] [--fa auto|on|off]
//
// --ppl re-does llama-perplexity's default computation (tools/perplexity/perplexity.cpp,
// perplexity()) one chunk at a time and prints every chunk's summed negative log-likelihood
// in full precision, which llama-perplexity itself does not print (it only prints the running
// estimate to 4 decimals). gen_golden.py checks that its final value agrees with llama-perplexity.

#include "llama.h"

#include <algorithm>
#include <clocale>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string g_log;  // llama.cpp's log, kept so we can report what "auto" settings resolved to

void log_cb(ggml_log_level level, const char * text, void * /*user*/) {
    g_log += text;
    if (level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

// JSON string escaping. Invalid UTF-8 (possible when a generation is cut mid-character)
// becomes U+FFFD, one per "maximal subpart" as Unicode recommends (Unicode 15, section 3.9,
// U+FFFD substitution of maximal subparts) — the same as Rust's String::from_utf8_lossy and
// Python's bytes.decode(errors="replace") — so the output is always valid JSON; `valid`
// reports whether a replacement happened.
std::string json_str(const std::string & s, bool * valid = nullptr) {
    std::string o = "\"";
    bool ok = true;
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        const unsigned char c = (unsigned char) s[i];
        size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (c < 0x80) {
            len = 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;  // no overlongs
            if (c == 0xED) hi = 0x9F;  // no surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;  // <= U+10FFFF
        }
        if (len == 0) {  // a byte that can never start a character
            ok = false;
            o += "\\ufffd";
            i += 1;
            continue;
        }
        // how many bytes of the sequence are well-formed
        size_t k = 1;
        while (k < len && i + k < n) {
            const unsigned char b = (unsigned char) s[i + k];
            const bool good = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
            if (!good) break;
            k++;
        }
        if (k < len) {  // truncated or broken: the maximal subpart s[i..i+k) becomes one U+FFFD
            ok = false;
            o += "\\ufffd";
            i += k;
            continue;
        }
        if (len == 1) {
            switch (c) {
                case '"': o += "\\\""; break;
                case '\\': o += "\\\\"; break;
                case '\n': o += "\\n"; break;
                case '\r': o += "\\r"; break;
                case '\t': o += "\\t"; break;
                default:
                    if (c < 0x20 || c == 0x7F) {
                        char buf[8];
                        snprintf(buf, sizeof(buf), "\\u%04x", c);
                        o += buf;
                    } else {
                        o += (char) c;
                    }
            }
        } else {
            o.append(s, i, len);
        }
        i += len;
    }
    o += "\"";
    if (valid) *valid = ok;
    return o;
}

std::string piece(const llama_vocab * vocab, llama_token t, bool special) {
    std::vector<char> buf(256);
    int n = llama_token_to_piece(vocab, t, buf.data(), (int32_t) buf.size(), 0, special);
    if (n < 0) {
        buf.resize(-n);
        n = llama_token_to_piece(vocab, t, buf.data(), (int32_t) buf.size(), 0, special);
    }
    return std::string(buf.data(), std::max(n, 0));
}

struct TopK {
    std::vector<llama_token> ids;
    std::vector<double> logprobs;
    llama_token argmax;
};

// log-softmax over the whole vocabulary in double precision, then the k best.
TopK top_k(const float * logits, int n_vocab, int k) {
    double mx = -INFINITY;
    llama_token am = 0;
    for (int i = 0; i < n_vocab; i++) {
        if (logits[i] > mx) {  // strict: the first maximal index wins, as in llama_sampler_greedy
            mx = logits[i];
            am = i;
        }
    }
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += std::exp((double) logits[i] - mx);
    const double lse = mx + std::log(sum);
    std::vector<llama_token> idx(n_vocab);
    std::iota(idx.begin(), idx.end(), 0);
    k = std::min(k, n_vocab);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](llama_token a, llama_token b) {
        if (logits[a] != logits[b]) return logits[a] > logits[b];
        return a < b;
    });
    TopK r;
    r.argmax = am;
    for (int j = 0; j < k; j++) {
        r.ids.push_back(idx[j]);
        r.logprobs.push_back((double) logits[idx[j]] - lse);
    }
    return r;
}

std::string topk_json(const TopK & t) {
    std::ostringstream o;
    o << "{\"ids\":[";
    for (size_t j = 0; j < t.ids.size(); j++) o << (j ? "," : "") << t.ids[j];
    o << "],\"logprobs\":[";
    char buf[64];
    for (size_t j = 0; j < t.logprobs.size(); j++) {
        snprintf(buf, sizeof(buf), "%.6f", t.logprobs[j]);
        o << (j ? "," : "") << buf;
    }
    o << "]}";
    return o.str();
}

// Mirrors perplexity() in llama.cpp's tools/perplexity/perplexity.cpp (default mode, no stride):
// tokenize the whole text once with add_special=true, parse_special=false (common_tokenize's
// default); cut it into n_chunk = n_tokens / n_ctx chunks of n_ctx tokens (the tail is dropped);
// in each chunk, if the vocabulary adds BOS, the chunk's first token is *replaced* by BOS; the
// chunk is evaluated from an empty KV cache at positions 0..n_ctx-1; logits at positions
// first = n_ctx/2 .. n_ctx-2 are scored against the next token, i.e. tokens first+1..n_ctx-1
// of the chunk (n_ctx - first - 1 tokens per chunk). PPL = exp(total NLL / total count).
int run_ppl(llama_model * model, const llama_vocab * vocab, const std::string & text, int n_ctx, int n_threads,
            llama_flash_attn_type fa) {
    const int n_vocab = llama_vocab_n_tokens(vocab);
    const bool add_bos = llama_vocab_get_add_bos(vocab);
    int n = -llama_tokenize(vocab, text.data(), (int32_t) text.size(), nullptr, 0, true, false);
    std::vector<llama_token> toks(std::max(n, 0));
    if (n <= 0 || llama_tokenize(vocab, text.data(), (int32_t) text.size(), toks.data(), n, true, false) != n) {
        fprintf(stderr, "error: tokenization failed\n");
        return 1;
    }
    const int n_chunk = n / n_ctx;
    const int first = n_ctx / 2;
    if (n_chunk < 2) {
        fprintf(stderr, "error: need at least %d tokens, got %d\n", 2 * n_ctx, n);
        return 1;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_ubatch = n_ctx;
    cp.n_outputs_max = 0;
    cp.n_outputs_max_per_seq = 0;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.flash_attn_type = fa;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "error: failed to create context\n");
        return 1;
    }
    llama_batch batch = llama_batch_init(n_ctx, 0, 1);
    std::ostringstream out;
    out << "{\"n_tokens\":" << n << ",\"add_bos\":" << (add_bos ? "true" : "false") << ",\"n_ctx\":" << n_ctx
        << ",\"first\":" << first << ",\"n_chunk\":" << n_chunk << ",\"chunks\":[";
    double nll_total = 0.0;
    long count_total = 0;
    char buf[96];
    for (int c = 0; c < n_chunk; c++) {
        llama_memory_clear(llama_get_memory(ctx), true);
        for (int i = 0; i < n_ctx; i++) {
            batch.token[i] = (i == 0 && add_bos) ? llama_vocab_bos(vocab) : toks[c * n_ctx + i];
            batch.pos[i] = i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = i >= first;
        }
        batch.n_tokens = n_ctx;
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "error: llama_decode failed on chunk %d\n", c);
            return 1;
        }
        double nll = 0.0;
        int cnt = 0;
        for (int i = first; i < n_ctx - 1; i++) {
            const float * lg = llama_get_logits_ith(ctx, i);
            double mx = -INFINITY;
            for (int v = 0; v < n_vocab; v++) mx = std::max(mx, (double) lg[v]);
            double sum = 0.0;
            for (int v = 0; v < n_vocab; v++) sum += std::exp((double) lg[v] - mx);
            nll += mx + std::log(sum) - (double) lg[toks[c * n_ctx + i + 1]];
            cnt++;
        }
        nll_total += nll;
        count_total += cnt;
        snprintf(buf, sizeof(buf), "{\"nll_sum\":%.6f,\"count\":%d}", nll, cnt);
        out << (c ? "," : "") << buf;
    }
    snprintf(buf, sizeof(buf), "%.6f", std::exp(nll_total / count_total));
    out << "],\"ppl\":" << buf << "}\n";
    fputs(out.str().c_str(), stdout);
    llama_batch_free(batch);
    llama_free(ctx);
    return 0;
}

llama_flash_attn_type parse_fa(const std::string & fa) {
    return fa == "on" ? LLAMA_FLASH_ATTN_TYPE_ENABLED
           : fa == "off" ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                         : LLAMA_FLASH_ATTN_TYPE_AUTO;
}

[[noreturn]] void usage(const char * argv0) {
    fprintf(stderr,
            "usage: %s -m MODEL.gguf -f PROMPT.txt [-n N_PREDICT=64] [-k TOPK=5] [-t THREADS=2] "
            "[-c N_CTX=2048] [--fa auto|on|off] [--kv f16|f32]\n       %s -m MODEL.gguf -f TEXT.txt --ppl N_CTX [-t THREADS] [--fa auto|on|off]\n",
            argv0, argv0);
    exit(2);
}

}  // namespace

int main(int argc, char ** argv) {
    std::setlocale(LC_NUMERIC, "C");
    std::string model_path, prompt_path, fa = "auto", kv = "f16";
    int n_predict = 64, k = 5, n_threads = 2, n_ctx = 2048, ppl_ctx = 0;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> const char * {
            if (i + 1 >= argc) usage(argv[0]);
            return argv[++i];
        };
        if (a == "-m") model_path = next();
        else if (a == "-f") prompt_path = next();
        else if (a == "-n") n_predict = atoi(next());
        else if (a == "-k") k = atoi(next());
        else if (a == "-t") n_threads = atoi(next());
        else if (a == "-c") n_ctx = atoi(next());
        else if (a == "--fa") fa = next();
        else if (a == "--kv") kv = next();
        else if (a == "--ppl") ppl_ctx = atoi(next());
        else usage(argv[0]);
    }
    if (model_path.empty() || prompt_path.empty() || k < 1 || n_predict < 0 || n_threads < 1) usage(argv[0]);

    std::ifstream pf(prompt_path, std::ios::binary);
    if (!pf) {
        fprintf(stderr, "error: cannot read prompt file %s\n", prompt_path.c_str());
        return 1;
    }
    std::string prompt((std::istreambuf_iterator<char>(pf)), std::istreambuf_iterator<char>());

    llama_log_set(log_cb, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) {
        fprintf(stderr, "error: unable to load model %s\n", model_path.c_str());
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    if (ppl_ctx > 0) {
        // llama.cpp's `-f FILE` (common/arg.cpp) drops one trailing '\n' from the file, then
        // processes backslash escapes; gen_golden.py only feeds texts without backslashes.
        if (!prompt.empty() && prompt.back() == '\n') prompt.pop_back();
        if (prompt.find('\\') != std::string::npos) {
            fprintf(stderr, "error: --ppl text contains a backslash; llama.cpp would unescape it\n");
            return 1;
        }
        return run_ppl(model, vocab, prompt, ppl_ctx, n_threads, parse_fa(fa));
    }

    // Same call llama-server makes for a raw /completion prompt (tokenize_mixed -> common_tokenize).
    int n_prompt = -llama_tokenize(vocab, prompt.data(), (int32_t) prompt.size(), nullptr, 0, true, true);
    std::vector<llama_token> toks(std::max(n_prompt, 0));
    if (n_prompt <= 0 ||
        llama_tokenize(vocab, prompt.data(), (int32_t) prompt.size(), toks.data(), n_prompt, true, true) != n_prompt) {
        fprintf(stderr, "error: tokenization of %s failed\n", prompt_path.c_str());
        return 1;
    }
    if (n_prompt + n_predict > n_ctx) {
        fprintf(stderr, "error: prompt (%d) + n_predict (%d) exceeds n_ctx (%d)\n", n_prompt, n_predict, n_ctx);
        return 1;
    }

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    // The whole prompt is a single batch and a single ubatch, so no chunking artefacts.
    cp.n_batch = std::max(512, n_prompt);
    cp.n_ubatch = cp.n_batch;
    cp.n_outputs_max = 0;          // 0 = n_batch: we want logits for every prompt position
    cp.n_outputs_max_per_seq = 0;  // 0 = n_outputs_max
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.type_k = kv == "f32" ? GGML_TYPE_F32 : GGML_TYPE_F16;
    cp.type_v = cp.type_k;
    cp.flash_attn_type = parse_fa(fa);
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "error: failed to create context\n");
        return 1;
    }
    std::string fa_resolved = fa;
    if (fa == "auto") {
        // llama-context.cpp logs "<func>: Flash Attention enabled" or "... not supported, set to disabled".
        if (g_log.find("Flash Attention enabled") != std::string::npos) {
            fa_resolved = "on";
        } else if (g_log.find("Flash Attention not supported") != std::string::npos) {
            fa_resolved = "off";
        } else {
            fa_resolved = "auto(unresolved)";
        }
    }

    std::ostringstream out;
    char buf[64];
    out << "{\"n_vocab\":" << n_vocab;
    out << ",\"add_bos\":" << (llama_vocab_get_add_bos(vocab) ? "true" : "false");
    out << ",\"add_eos\":" << (llama_vocab_get_add_eos(vocab) ? "true" : "false");
    out << ",\"bos_id\":" << llama_vocab_bos(vocab);
    out << ",\"settings\":{\"n_ctx\":" << n_ctx << ",\"n_batch\":" << cp.n_batch << ",\"n_ubatch\":" << cp.n_ubatch
        << ",\"n_threads\":" << n_threads << ",\"type_k\":\"" << kv << "\",\"type_v\":\"" << kv << "\",\"flash_attn\":\""
        << fa_resolved << "\",\"swa_full\":" << (cp.swa_full ? "true" : "false") << "}";
    out << ",\"prompt_tokens\":[";
    for (int i = 0; i < n_prompt; i++) out << (i ? "," : "") << toks[i];
    out << "]";

    // (b) the prompt as one batch, logits requested at every position.
    llama_batch batch = llama_batch_init(std::max(n_prompt, 1), 0, 1);
    for (int i = 0; i < n_prompt; i++) {
        batch.token[i] = toks[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n_prompt;
    if (llama_decode(ctx, batch) != 0) {
        fprintf(stderr, "error: llama_decode failed on the prompt\n");
        return 1;
    }
    out << ",\"prompt_top\":[";
    TopK last;
    for (int i = 0; i < n_prompt; i++) {
        const float * lg = llama_get_logits_ith(ctx, i);
        if (!lg) {
            fprintf(stderr, "error: no logits for prompt position %d\n", i);
            return 1;
        }
        last = top_k(lg, n_vocab, k);
        out << (i ? "," : "") << topk_json(last);
    }
    out << "]";

    // (c) greedy continuation, one token per llama_decode call.
    std::vector<llama_token> gen;
    std::vector<std::string> gen_top;
    std::string stop = "length";
    llama_token eog_id = -1;
    TopK cur = last;
    for (int step = 0; step < n_predict; step++) {
        llama_token t = cur.argmax;
        if (llama_vocab_is_eog(vocab, t)) {
            stop = "eog";
            eog_id = t;
            break;
        }
        gen.push_back(t);
        if ((int) gen.size() == n_predict) break;  // no need to evaluate the last one
        batch.n_tokens = 1;
        batch.token[0] = t;
        batch.pos[0] = n_prompt + step;
        batch.n_seq_id[0] = 1;
        batch.seq_id[0][0] = 0;
        batch.logits[0] = 1;
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "error: llama_decode failed at generation step %d\n", step);
            return 1;
        }
        cur = top_k(llama_get_logits_ith(ctx, -1), n_vocab, k);
        gen_top.push_back(topk_json(cur));
    }
    // Text as llama-server streams it: concatenated pieces, special tokens not rendered.
    std::string text;
    for (auto t : gen) text += piece(vocab, t, false);
    bool valid = true;
    std::string text_json = json_str(text, &valid);

    out << ",\"greedy\":{\"ids\":[";
    for (size_t i = 0; i < gen.size(); i++) out << (i ? "," : "") << gen[i];
    out << "],\"stop\":\"" << stop << "\",\"eog_id\":";
    if (eog_id >= 0) out << eog_id; else out << "null";
    out << ",\"text\":" << text_json << ",\"text_valid_utf8\":" << (valid ? "true" : "false");
    out << ",\"top\":[";
    for (size_t i = 0; i < gen_top.size(); i++) out << (i ? "," : "") << gen_top[i];
    out << "]}}\n";
    (void) buf;

    fputs(out.str().c_str(), stdout);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
