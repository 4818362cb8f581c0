// The only C++ in the T5 family: a thin wrapper over sentencepiece::SentencePieceProcessor (see spm_shim.h).
#include "models/t5/spm_shim.h"

#include <sentencepiece_processor.h>

#include <exception>
#include <new>
#include <string>
#include <vector>

struct SpmModel {
    sentencepiece::SentencePieceProcessor proc;
};

extern "C" SpmModel *spm_model_load(const char *path, Error *err) {
    SpmModel *m = nullptr;
    try {
        m = new SpmModel;
        const auto status = m->proc.Load(path);
        if (!status.ok()) {
            error_set(err, "%s: cannot load the SentencePiece model: %s", path, status.ToString().c_str());
            delete m;
            return nullptr;
        }
        return m;
    } catch (const std::exception &e) {
        error_set(err, "%s: cannot load the SentencePiece model: %s", path, e.what());
        delete m;
        return nullptr;
    }
}

extern "C" void spm_model_free(SpmModel *m) { delete m; }

extern "C" int spm_model_encode(const SpmModel *m, const char *text, int *ids, int cap, int *n_total, Error *err) {
    try {
        std::vector<int> out;
        const auto status = m->proc.Encode(text, &out);
        if (!status.ok()) return error_set(err, "SentencePiece cannot encode the text: %s", status.ToString().c_str());
        for (size_t i = 0; i < out.size() && (int)i < cap; i++) ids[i] = out[i];
        *n_total = (int)out.size();
        return 0;
    } catch (const std::exception &e) {
        return error_set(err, "SentencePiece cannot encode the text: %s", e.what());
    }
}

extern "C" int spm_model_eos_id(const SpmModel *m) { return m->proc.eos_id(); }
extern "C" int spm_model_pad_id(const SpmModel *m) { return m->proc.pad_id(); }
extern "C" int spm_model_vocab_size(const SpmModel *m) { return m->proc.GetPieceSize(); }
