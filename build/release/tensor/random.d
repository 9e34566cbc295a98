build/release/tensor/random.o: tensor/random.cpp tensor/random.h \
 tensor/error.h
tensor/random.h:
tensor/error.h:
